//! The reply-subject class (issue 26): nats-server checks publish permissions on a message's
//! subject, never on a request's reply subject nor a consumer's delivery subject, so every
//! role that may make a JetStream request can have the server publish where the role itself
//! may not. Found from outside: the reviewer's credential (held by the web-facing console)
//! rewrote every running moderator's policy by pulling an AUDIT entry of its own onto
//! `$KV.offpath-policies.policies`, by pull and by push consumer; a transport's stream-info
//! request aimed at the key overwrote the stored value, and the next moderator restart came
//! up without the fleet's policy. Each attack runs here with the real credentials against
//! a real moderator, on nats-server 2.15 and on Debian's 2.9.10.

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use async_nats::{Client, HeaderMap};
use offpath_harness::secure::{self, SecuredNats};
use offpath_harness::{NatsServer, Proc, http, scrape, topology};
use offpath_protocol::permissions::Role;
use offpath_protocol::policy_signature::SigningKey;
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};

/// The operator's policy: insults flagged, under the policy name `fleet`.
const FLEET: &str =
    "default = \"fleet\"\n[policies.fleet]\nlabels.harassment = { action = \"flag\" }\n";
/// What the attacker wants in force: insults ignored, under the name `evil`.
const EVIL: &str =
    "default = \"evil\"\n[policies.evil]\nlabels.harassment = { action = \"ignore\" }\n";

fn key_subject() -> String {
    format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}")
}

fn acme() -> Role {
    Role::Transport {
        tenant: "acme".into(),
        instance: Some("gw1".into()),
    }
}

/// A secured server (`binary`, or the first found) with the topology and the policy bucket.
async fn secured(binary: Option<std::path::PathBuf>) -> SecuredNats {
    let mut builder = NatsServer::builder();
    if let Some(binary) = binary {
        builder = builder.binary(binary);
    }
    let roles = [Role::Topology, Role::Moderator, Role::Reviewer, acme()];
    let nats = secure::start(builder, &roles)
        .unwrap_or_else(|err| panic!("cannot start nats-server: {err}"));
    let admin = nats
        .credentials(&Role::Topology)
        .connect(&nats.server.url())
        .await
        .unwrap();
    let js = jetstream::new(admin);
    let config = topology::small();
    offpath_protocol::topology::apply(&js, &config)
        .await
        .expect("topology");
    offpath_protocol::topology::ensure_policy_bucket(&js, &config)
        .await
        .expect("policy bucket");
    nats
}

/// Puts `text` in the bucket as `offpath policy push` does (signed, as the topology user).
async fn push(nats: &SecuredNats, key: &SigningKey, text: &str, at_ms: u64) {
    let admin = nats
        .credentials(&Role::Topology)
        .connect(&nats.server.url())
        .await
        .unwrap();
    let store = jetstream::new(admin)
        .get_key_value(POLICY_BUCKET)
        .await
        .expect("bucket");
    store
        .put(POLICY_KEY, key.sign(text, at_ms).into())
        .await
        .expect("push");
}

/// `offpath moderator` logged in as the moderator user, trusting `key`; ready.
async fn moderator(nats: &SecuredNats, key: &SigningKey) -> (Proc, std::net::SocketAddr) {
    let password = &nats.credentials(&Role::Moderator).password;
    let signer = key.public_key();
    let env = [
        ("OFFPATH_NATS_PASSWORD", password.as_str()),
        ("OFFPATH_POLICY_SIGNERS", signer.as_str()),
    ];
    let moderator =
        common::chat::moderator_with_env(&nats.server, &["--nats-user", "moderator"], &env).await;
    let ops = moderator.ops;
    (moderator, ops)
}

/// Waits until the moderator has refused at least `count` unsigned bucket values.
async fn refused_unsigned(ops: std::net::SocketAddr, count: f64) -> String {
    let done = |status: u16, body: &str| {
        status == 200
            && scrape::metric(
                body,
                "offpath_moderator_policy_bucket_refused_total",
                r#"reason="unsigned""#,
            ) >= count
    };
    match http::wait_until(ops, "/metrics", Duration::from_secs(20), done).await {
        Ok((_, body)) => body,
        Err((_, body)) => panic!(
            "the moderator did not see {count} unsigned values; in force: {:?}",
            scrape::series(&body, "offpath_moderator_policy_info")
        ),
    }
}

/// Asserts that the fleet's policy is the one in force, from the bucket, and `evil` is not.
fn assert_fleet_in_force(metrics: &str, when: &str) {
    let info = "offpath_moderator_policy_info";
    assert_eq!(
        scrape::metric(metrics, info, r#"policy="evil""#),
        0.0,
        "{when}: the attacker's policy is in force"
    );
    assert_eq!(
        scrape::metric(metrics, info, r#"policy="fleet""#),
        1.0,
        "{when}: the fleet's policy is not in force"
    );
    assert_eq!(
        scrape::value(
            metrics,
            "offpath_moderator_policy_source{source=\"bucket\"}"
        ),
        1.0,
        "{when}"
    );
}

/// As the reviewer: stores `EVIL` (and an `EVIL` carrying a delete marker) in AUDIT, where it
/// may publish, then has the server deliver both onto the policy key by a pull request whose
/// reply subject is the key, and by a push consumer whose delivery subject is the key.
async fn reviewer_redirects(nats: &SecuredNats) {
    let reviewer: Client = nats
        .credentials(&Role::Reviewer)
        .connect(&nats.server.url())
        .await
        .unwrap();
    let js = jetstream::new(reviewer.clone());
    js.publish("offpath.audit.x", EVIL.into())
        .await
        .expect("the reviewer may publish audit entries")
        .await
        .expect("stored in AUDIT");
    let mut delete = HeaderMap::new();
    delete.insert("KV-Operation", "DEL");
    js.publish_with_headers("offpath.audit.x", delete, EVIL.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let pull = serde_json::json!({
        "stream_name": "AUDIT",
        "config": {"durable_name": "evil-pull", "ack_policy": "explicit", "filter_subject": "offpath.audit.x"}
    });
    let created = reviewer
        .request(
            "$JS.API.CONSUMER.CREATE.AUDIT.evil-pull",
            pull.to_string().into(),
        )
        .await
        .expect("the reviewer may create consumers on AUDIT");
    assert!(!String::from_utf8_lossy(&created.payload).contains("\"error\""));
    reviewer
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.AUDIT.evil-pull",
            key_subject(),
            r#"{"batch":2,"no_wait":true}"#.into(),
        )
        .await
        .unwrap();
    let push = serde_json::json!({
        "stream_name": "AUDIT",
        "config": {"durable_name": "evil-push", "ack_policy": "none",
                   "deliver_subject": key_subject(), "filter_subject": "offpath.audit.x"}
    });
    let created = reviewer
        .request(
            "$JS.API.CONSUMER.CREATE.AUDIT.evil-push",
            push.to_string().into(),
        )
        .await
        .expect("the reviewer may create consumers on AUDIT");
    assert!(!String::from_utf8_lossy(&created.payload).contains("\"error\""));
    reviewer.flush().await.unwrap();
}

/// As the transport: a stream-info request answered onto the key (this one overwrote the
/// stored value).
async fn transport_redirects(nats: &SecuredNats) {
    let transport = nats
        .credentials(&acme())
        .connect(&nats.server.url())
        .await
        .unwrap();
    transport
        .publish_with_reply("$JS.API.STREAM.INFO.VERDICTS", key_subject(), "".into())
        .await
        .unwrap();
    transport.flush().await.unwrap();
}

/// The number of values stored under the key (the attacks do reach the store).
async fn stored_on_key(nats: &SecuredNats) -> u64 {
    let admin = nats
        .credentials(&Role::Topology)
        .connect(&nats.server.url())
        .await
        .unwrap();
    let mut stream = jetstream::new(admin)
        .get_stream(format!("KV_{POLICY_BUCKET}"))
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    info.state.last_sequence
}

/// Every redirect reaches the running moderator and the bucket, and none changes what is in
/// force; a moderator started after them comes up on the operator's signed policy.
async fn redirects_change_nothing(binary: Option<std::path::PathBuf>) {
    let nats = secured(binary).await;
    let key = SigningKey::generate();
    push(&nats, &key, FLEET, 1_000).await;
    let (running, ops) = moderator(&nats, &key).await;
    let (_, metrics) = http::get(ops, "/metrics").await.unwrap();
    assert_fleet_in_force(&metrics, "at start");

    let before = stored_on_key(&nats).await;
    reviewer_redirects(&nats).await;
    transport_redirects(&nats).await;
    // Pull: 2 entries; push: 2 entries; stream info: 1.
    let metrics = refused_unsigned(ops, 5.0).await;
    assert_fleet_in_force(&metrics, "after the redirects");
    assert!(
        stored_on_key(&nats).await > before,
        "the redirects did not reach the bucket: the test proves nothing"
    );
    // A replay of an older signed value (any role able to read the bucket could redirect
    // one) is refused as stale.
    push(&nats, &key, EVIL, 500).await;
    let done = |status: u16, body: &str| {
        status == 200
            && scrape::metric(
                body,
                "offpath_moderator_policy_bucket_refused_total",
                r#"reason="stale""#,
            ) >= 1.0
    };
    let (_, metrics) = http::wait_until(ops, "/metrics", Duration::from_secs(20), done)
        .await
        .expect("the replay is refused as stale");
    assert_fleet_in_force(&metrics, "after a replay");
    drop(running);

    // The next moderator reads the key's history and takes the newest signed value.
    let (_restarted, ops) = moderator(&nats, &key).await;
    let (_, metrics) = http::get(ops, "/metrics").await.unwrap();
    assert_fleet_in_force(&metrics, "after a restart");
}

/// On the nats-server found first (the bootstrap's 2.15).
#[tokio::test]
async fn redirected_replies_cannot_set_the_fleet_policy() {
    redirects_change_nothing(None).await;
}

/// On the oldest supported nats-server (Debian 12's 2.9.10).
#[tokio::test]
async fn redirected_replies_cannot_set_the_fleet_policy_on_2_9() {
    let binary =
        offpath_harness::find_project_tool("oldest/bin/nats-server").unwrap_or_else(|| {
            panic!("no .tools/oldest/bin/nats-server: run `scripts/bootstrap --oldest-nats`")
        });
    redirects_change_nothing(Some(binary)).await;
}

/// The console's reviewer token in these tests.
const TOKEN: &str = "redirect-test-reviewer-token";

/// `offpath review` logged in as the reviewer user, with reviewer `rita` (`TOKEN`); ready.
async fn console(nats: &SecuredNats, dir: &std::path::Path) -> (Proc, std::net::SocketAddr) {
    let password = &nats.credentials(&Role::Reviewer).password;
    let env = [("OFFPATH_NATS_PASSWORD", password.as_str())];
    let extra = ["--nats-user", "reviewer"];
    common::chat::review_console_as(&nats.server, dir, TOKEN, &extra, &env).await
}

/// A flagged message's review item for tenant acme.
fn review_item(id: &str) -> Vec<u8> {
    use offpath_protocol::{Action, ReviewItem, ReviewKind, Verdict};
    let verdict = Verdict {
        sender: "mallory".into(),
        text_sha256: Some(offpath_protocol::text_sha256("hi")),
        ..offpath_harness::verdicts::sample(id, Action::Flag, 0.0)
    };
    serde_json::to_vec(&ReviewItem::new(ReviewKind::Flag, &verdict, "hi", 1)).unwrap()
}

/// The reviewer credential stores an item-shaped entry in AUDIT and has the server deliver
/// it into REVIEW by a pull reply subject (stored there, under `offpath.audit.acme`) and by
/// a push delivery subject (seen here not to be stored: a push consumer delivers only to
/// interest, and a stream's capture is not counted as such); the console lists the
/// moderators' real item and not the forgery, and counts it as malformed. A transport's
/// stream-info answer aimed at REVIEW and AUDIT is stored there and counted as malformed.
async fn forged_review_items_are_refused(binary: Option<std::path::PathBuf>) {
    let nats = secured(binary).await;
    let dir = tempfile::tempdir().unwrap();
    let (_console, addr) = console(&nats, dir.path()).await;
    let reviewer = nats
        .credentials(&Role::Reviewer)
        .connect(&nats.server.url())
        .await
        .unwrap();
    let js = jetstream::new(reviewer.clone());
    js.publish("offpath.audit.acme", review_item("forged-1").into())
        .await
        .unwrap()
        .await
        .expect("the reviewer may publish on AUDIT");
    let review = offpath_protocol::subject::review_subject("acme");
    let pull = serde_json::json!({"stream_name": "AUDIT", "config": {
        "durable_name": "forge-pull", "ack_policy": "explicit", "filter_subject": "offpath.audit.acme"}});
    reviewer
        .request(
            "$JS.API.CONSUMER.CREATE.AUDIT.forge-pull",
            pull.to_string().into(),
        )
        .await
        .unwrap();
    reviewer
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.AUDIT.forge-pull",
            review.clone(),
            r#"{"batch":1,"no_wait":true}"#.into(),
        )
        .await
        .unwrap();
    let push = serde_json::json!({"stream_name": "AUDIT", "config": {
        "durable_name": "forge-push", "ack_policy": "none", "deliver_subject": review,
        "filter_subject": "offpath.audit.acme"}});
    reviewer
        .request(
            "$JS.API.CONSUMER.CREATE.AUDIT.forge-push",
            push.to_string().into(),
        )
        .await
        .unwrap();
    // A transport's stream-info answer aimed at REVIEW and AUDIT: server JSON, no item.
    let transport = nats
        .credentials(&acme())
        .connect(&nats.server.url())
        .await
        .unwrap();
    for target in [review.clone(), "offpath.audit.acme".to_string()] {
        transport
            .publish_with_reply("$JS.API.STREAM.INFO.VERDICTS", target, "".into())
            .await
            .unwrap();
    }
    transport.flush().await.unwrap();
    // The moderators' own item, published where only they may.
    let moderator = nats
        .credentials(&Role::Moderator)
        .connect(&nats.server.url())
        .await
        .unwrap();
    jetstream::new(moderator)
        .publish(
            offpath_protocol::subject::review_subject("acme"),
            review_item("real-1").into(),
        )
        .await
        .unwrap()
        .await
        .expect("a moderator publishes review items");

    let (status, body) = http::wait_until(addr, "/metrics", Duration::from_secs(20), |s, b| {
        let malformed = |stream: &str| {
            scrape::metric(
                b,
                "offpath_review_malformed_total",
                &format!("stream=\"{stream}\""),
            )
        };
        // REVIEW: the pulled forgery and the transport's answer; AUDIT: the forgery (not
        // an audit entry) and the transport's answer.
        s == 200 && malformed("REVIEW") >= 2.0 && malformed("AUDIT") >= 2.0
    })
    .await
    .unwrap_or_else(|(_, body)| {
        let malformed: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("offpath_review_malformed_total"))
            .collect();
        panic!("the redirected entries were not refused: {malformed:?}")
    });
    assert_eq!(status, 200, "{body}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, listed) = http::send(addr, "GET", "/api/queue", &[auth.as_str()], "")
            .await
            .expect("the console answers");
        assert_eq!(status, 200, "{listed}");
        assert!(
            !listed.contains("forged-1"),
            "a forged item is listed: {listed}"
        );
        if listed.contains("real-1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the real item never came: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// On the nats-server found first (the bootstrap's 2.15).
#[tokio::test]
async fn redirected_deliveries_cannot_forge_review_items() {
    forged_review_items_are_refused(None).await;
}

/// On the oldest supported nats-server (Debian 12's 2.9.10).
#[tokio::test]
async fn redirected_deliveries_cannot_forge_review_items_on_2_9() {
    let binary =
        offpath_harness::find_project_tool("oldest/bin/nats-server").unwrap_or_else(|| {
            panic!("no .tools/oldest/bin/nats-server: run `scripts/bootstrap --oldest-nats`")
        });
    forged_review_items_are_refused(Some(binary)).await;
}
