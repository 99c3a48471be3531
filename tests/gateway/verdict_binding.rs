//! Verdicts bound to their request (issue 13, attack 2), end to end against a real
//! nats-server: unguessable ids, a de-duplication key per tenant, a verdict refused unless
//! it judged the text sent, and verdict frames for the sending connection only.

use crate::common;

use offpath_ops::cli::Millis;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use common::chat::{self, Transport, is};
use offpath_harness::{scrape, testing, verdicts};
use offpath_protocol::subject::{VERDICTS_STREAM, request_subject, verdict_subject};
use offpath_protocol::{Action, ModerationRequest, Verdict, encode, now_ms, text_sha256};

const WAIT: Duration = Duration::from_secs(30);
/// Room for a moderator process to start and load its models.
const WAIT_MODEL: Duration = Duration::from_secs(90);
const INSULT: &str = "you are a stupid worthless idiot";
const HARMLESS: &str = "have a lovely day";

/// Publishes `request` as a hostile (or honest) publisher with request rights would, with
/// `key` as its `Nats-Msg-Id`; returns whether JetStream called it a duplicate.
async fn publish_request(js: &jetstream::Context, request: &ModerationRequest, key: &str) -> bool {
    let publish = PublishMessage::build()
        .payload(encode(request).into())
        .message_id(key);
    js.send_publish(request_subject(&request.tenant), publish)
        .await
        .expect("publish request")
        .await
        .expect("request stored")
        .duplicate
}

/// The id after `previous` if ids counted: the last `.`-separated token plus one, in hex
/// of the same width (`<instance>.<boot_ms>.<seq>` gives exactly the next id).
fn predict_next(previous: &str) -> String {
    let (head, last) = previous.rsplit_once('.').expect("a dotted id");
    let next = u128::from_str_radix(last, 16).expect("hex").wrapping_add(1);
    format!("{head}.{next:0width$x}", width = last.len())
}

/// Polls the transport's `/metrics` until `series` (a name and a label fragment) reaches
/// `at_least`; returns its value.
async fn wait_metric(transport: &Transport, name: &str, labels: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = scrape::metric(&transport.metrics().await, name, labels);
        if value >= at_least || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Attack 2: a publisher with request rights only pre-publishes a harmless request under
/// the next id it predicts, and a harmless request under the real insult's id once it
/// learns it. The real id was not predictable, the forged request's verdict is refused by
/// its digest, and the insult's sender gets `block` from the real moderator, never `allow`.
#[tokio::test]
async fn predicted_or_leaked_ids_do_not_get_an_insult_allowed() {
    let (server, transport) = chat::gateway(chat::transport_config()).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    let js = jetstream::new(testing::connect(&server).await);

    let first = alice.post("lobby", "see you tomorrow", "c1").await;
    let predicted = predict_next(&first);
    let forged = verdicts::request(&predicted, HARMLESS, now_ms());
    for key in [predicted.clone(), format!("acme/{predicted}")] {
        publish_request(&js, &forged, &key).await;
    }
    let insult = alice.post("lobby", INSULT, "c2").await;
    assert_ne!(
        insult, predicted,
        "the next id was predictable from {first}"
    );
    // The id leaked (after the real request was stored): a harmless text under it.
    let leaked = verdicts::request(&insult, HARMLESS, now_ms());
    publish_request(&js, &leaked, &format!("acme/{insult}/forged")).await;

    let _moderator = chat::moderator(&server, &[]).await;
    let verdict = alice
        .expect(WAIT_MODEL, is("verdict", Some(&insult)))
        .await
        .frame;
    assert_eq!(verdict["action"], "block", "{verdict}");
    bob.expect(WAIT, is("retract", Some(&insult))).await;
    let refused = wait_metric(
        &transport,
        "offpath_transport_verdicts_refused_total",
        "digest_mismatch",
        1.0,
    )
    .await;
    assert_eq!(refused, 1.0, "the leaked-id request's verdict is refused");
    let rest = alice.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter()
            .all(|r| !(r.frame["type"] == "verdict" && r.frame["id"] == insult.as_str())),
        "one verdict frame for the insult: {rest:?}"
    );
    transport.stop().await;
}

/// Two tenants sending the same id (`msg-42`) with the documented `<tenant>/<id>` key are
/// both moderated, and both verdicts are stored in `VERDICTS` (the moderator's key carries
/// the tenant too); a v1 publisher's bare id is still moderated.
#[tokio::test]
async fn two_tenants_with_the_same_id_are_both_moderated() {
    let server = chat::nats_with_topology().await;
    let js = jetstream::new(testing::connect(&server).await);
    let _moderator = chat::moderator(&server, &[]).await;
    let tenants = ["acme", "globex", "initech"];
    for tenant in tenants {
        let request = ModerationRequest {
            tenant: tenant.into(),
            ..verdicts::request("msg-42", INSULT, now_ms())
        };
        let key = match tenant {
            "initech" => "msg-42".to_string(),
            _ => request.dedup_key(),
        };
        assert!(
            !publish_request(&js, &request, &key).await,
            "{tenant}'s request taken for a duplicate"
        );
    }
    let stream = js.get_stream(VERDICTS_STREAM).await.expect("stream");
    for tenant in tenants {
        let subject = verdict_subject(tenant, "lobby");
        let deadline = tokio::time::Instant::now() + WAIT_MODEL;
        let stored = loop {
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(stored) => break stored,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("no verdict for {tenant}'s msg-42 stored: {err}"),
            }
        };
        let verdict: Verdict = serde_json::from_slice(&stored.payload).expect("verdict");
        assert_eq!(
            (verdict.id.as_str(), verdict.action),
            ("msg-42", Action::Block)
        );
        assert_eq!(verdict.text_sha256, Some(text_sha256(INSULT)));
    }
}

/// A forged verdict published on the verdict subject with a wrong digest (or none) is
/// refused and counted: it retracts nothing from a post room and releases nothing from a
/// fail-closed hold room, whose failure policy then drops the message at its deadline.
#[tokio::test]
async fn a_forged_verdict_with_a_wrong_digest_is_refused_and_counted() {
    let config = offpath_transport::Config {
        moderation: offpath_transport::ModerationConfig {
            hold_deadline: Millis::new(1_000),
            room_policy: vec!["vault=hold:fail_closed".parse().expect("rule")],
            ..chat::transport_config().moderation
        },
        ..chat::transport_config()
    };
    let (server, transport) = chat::gateway(config).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    alice.join("vault").await;
    bob.join("vault").await;
    let posted = alice.post("lobby", "a perfectly nice message", "c1").await;
    bob.expect(WAIT, is("message", Some(&posted))).await;
    let held = alice.post("vault", INSULT, "c2").await;

    let js = jetstream::new(testing::connect(&server).await);
    let forge = |id: &str, room: &str, action, text: Option<&str>| Verdict {
        room: room.into(),
        text_sha256: text.map(text_sha256),
        policy: None,
        ..verdicts::sample(id, action, 0.0)
    };
    for verdict in [
        forge(&posted, "lobby", Action::Block, Some("something else")),
        forge(&held, "vault", Action::Allow, Some(HARMLESS)),
        forge(&held, "vault", Action::Allow, None),
    ] {
        verdicts::publish(&js, &verdict).await;
    }
    let name = "offpath_transport_verdicts_refused_total";
    assert_eq!(
        wait_metric(&transport, name, "digest_mismatch", 2.0).await,
        2.0
    );
    assert_eq!(
        wait_metric(&transport, name, "missing_digest", 1.0).await,
        1.0
    );
    let verdict = alice.expect(WAIT, is("verdict", Some(&held))).await.frame;
    assert_eq!(
        (&verdict["action"], &verdict["reason"]),
        (&"unmoderated".into(), &"hold_deadline".into()),
        "{verdict}"
    );
    let seen = bob.drain(Duration::from_millis(300)).await;
    assert!(
        seen.iter()
            .all(|r| r.frame["type"] != "retract" && r.frame["id"] != held.as_str()),
        "a forgery retracted or released a message: {seen:?}"
    );
    scrape::assert_sums(
        &transport.metrics().await,
        &[("offpath_transport_verdicts_total", "", 0.0)],
    );
    transport.stop().await;
}

/// A page that connects as the same user name after the sender left does not receive the
/// sender's private verdict frame (it still sees the room's retract).
#[tokio::test]
async fn a_second_connection_of_the_same_user_does_not_get_the_verdict() {
    let (server, transport) = chat::gateway(chat::transport_config()).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    let id = alice.post("lobby", "hello", "c1").await;
    bob.expect(WAIT, is("message", Some(&id))).await;
    alice
        .send_raw(tokio_tungstenite::tungstenite::Message::Close(None))
        .await;
    alice.expect(WAIT, is("_close", None)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while scrape::metric(
        &transport.metrics().await,
        "offpath_transport_connections",
        "",
    ) > 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice still connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut impostor = transport.joined("alice", "lobby").await;

    let verdict = Verdict {
        text_sha256: Some(text_sha256("hello")),
        policy: None,
        ..verdicts::sample(&id, Action::Block, 0.97)
    };
    verdicts::publish(&jetstream::new(testing::connect(&server).await), &verdict).await;
    impostor.expect(WAIT, is("retract", Some(&id))).await;
    bob.expect(WAIT, is("retract", Some(&id))).await;
    let rest = impostor.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter().all(|r| r.frame["type"] != "verdict"),
        "the second connection got the first one's verdict: {rest:?}"
    );
    transport.stop().await;
}
