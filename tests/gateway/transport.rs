//! The chat gateway end to end: real nats-server, a real moderator process with the real
//! models, the transport on port 0, websocket clients.

use crate::common;

use std::time::Duration;

use common::chat::{self, is};
use offpath_harness::{scrape, testing, verdicts};
use offpath_protocol::Action;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

/// A clean message reaches both members and is allowed; an insult reaches both, then is
/// retracted for both and its sender is told `block`.
#[tokio::test]
async fn clean_message_allowed_insult_retracted() {
    let (_server, _moderator, transport) = chat::moderated(chat::transport_config()).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    // Joins are processed in order per connection; a round trip through a send proves it.
    alice
        .say("lobby", "thanks a lot, see you tomorrow", "c1")
        .await;
    let ack = alice.expect(WAIT, is("ack", None)).await.frame;
    assert_eq!(ack["client_msg_id"], "c1");
    assert_eq!(ack["held"], false);
    let id = ack["id"].as_str().expect("id").to_string();
    for client in [&mut alice, &mut bob] {
        let message = client.expect(WAIT, is("message", Some(&id))).await.frame;
        assert_eq!(message["sender"], "alice");
        assert_eq!(message["text"], "thanks a lot, see you tomorrow");
    }
    let verdict = alice.expect(WAIT, is("verdict", Some(&id))).await.frame;
    assert_eq!(verdict["action"], "allow", "{verdict}");
    assert!(verdict["scores"]["insult"].as_f64().expect("insult score") < 0.3);

    let id = alice
        .post("lobby", "you are a stupid worthless idiot", "c2")
        .await;
    for client in [&mut alice, &mut bob] {
        client.expect(WAIT, is("message", Some(&id))).await;
        let retract = client.expect(WAIT, is("retract", Some(&id))).await.frame;
        assert_eq!(retract["reason"], "blocked");
        assert_eq!(retract["room"], "lobby");
    }
    let verdict = alice.expect(WAIT, is("verdict", Some(&id))).await.frame;
    assert_eq!(verdict["action"], "block", "{verdict}");
    let others = bob.drain(Duration::from_millis(300)).await;
    assert!(
        others.iter().all(|r| r.frame["type"] != "verdict"),
        "only the sender gets verdicts: {others:?}"
    );

    let metrics = transport.metrics().await;
    scrape::assert_sums(
        &metrics,
        &[
            ("offpath_transport_verdicts_total", r#"action="allow""#, 1.0),
            ("offpath_transport_verdicts_total", r#"action="block""#, 1.0),
            ("offpath_transport_messages_total", "", 2.0),
            ("offpath_transport_connections", "", 2.0),
        ],
    );
    assert!(metrics.contains("offpath_transport_fanout_seconds_bucket"));
    assert!(metrics.contains("offpath_transport_verdict_lag_seconds_bucket"));
    transport.stop().await;
}

/// A verdict delivered twice is applied once: one retraction, one verdict frame; a verdict
/// for a message this gateway never saw still retracts it from the room (its sender's
/// connection is unknown, so nobody gets its verdict frame).
#[tokio::test]
async fn applying_a_verdict_twice_changes_nothing() {
    let (server, transport) = chat::gateway(chat::transport_config()).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    let id = alice.post("lobby", "hello", "c1").await;
    bob.expect(WAIT, is("message", Some(&id))).await;
    let js = async_nats::jetstream::new(testing::connect(&server).await);
    // An id this gateway assigned but no longer tracks (same instance, before a restart).
    let instance = id.split('.').next().expect("instance");
    let forgotten = format!("{instance}.0.ffff");
    for message_id in [
        id.clone(),
        forgotten.clone(),
        "someone-elses-id".to_string(),
    ] {
        let verdict = offpath_protocol::Verdict {
            text_sha256: Some(offpath_protocol::text_sha256("hello")),
            policy: None,
            ..verdicts::sample(&message_id, Action::Block, 0.97)
        };
        for _ in 0..2 {
            verdicts::publish(&js, &verdict).await;
        }
    }
    bob.expect(WAIT, is("retract", Some(&id))).await;
    bob.expect(WAIT, is("retract", Some(&forgotten))).await;
    let rest = bob.drain(Duration::from_millis(500)).await;
    assert!(
        rest.iter().all(|r| r.frame["type"] != "retract"),
        "retracted twice, or another gateway's id retracted: {rest:?}"
    );
    let verdicts: Vec<_> = alice
        .drain(Duration::from_millis(200))
        .await
        .into_iter()
        .filter(|r| r.frame["type"] == "verdict")
        .collect();
    assert_eq!(
        verdicts.len(),
        1,
        "one verdict frame, for the message of this connection: {verdicts:?}"
    );
    scrape::assert_sums(
        &transport.metrics().await,
        &[
            ("offpath_transport_verdicts_ignored_total", "duplicate", 2.0),
            ("offpath_transport_verdicts_ignored_total", "not_ours", 2.0),
        ],
    );
    transport.stop().await;
}

/// Each kind of bad frame gets its error frame with a stable code, and the connection keeps
/// working afterwards.
#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_survives() {
    let config = offpath_transport::Config {
        messages: offpath_transport::MessagesConfig {
            max_text_bytes: 100,
            ..chat::transport_config().messages
        },
        limits: offpath_transport::LimitsConfig {
            max_rooms_per_connection: 2,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let mut alice = transport.joined("alice", "lobby").await;
    let table: Vec<(&str, Message)> = vec![
        ("invalid_json", Message::text("{not json")),
        ("invalid_json", Message::text("[1, 2]")),
        ("missing_type", Message::text(r#"{"room":"lobby"}"#)),
        (
            "unknown_type",
            Message::text(r#"{"type":"shout","room":"lobby"}"#),
        ),
        (
            "invalid_frame",
            Message::text(r#"{"type":"send","room":"lobby"}"#),
        ),
        (
            "invalid_frame",
            Message::text(r#"{"type":"join","room":"lobby","admin":true}"#),
        ),
        (
            "invalid_frame",
            Message::text(r#"{"type":"send","room":"lobby","text":42}"#),
        ),
        (
            "invalid_room",
            Message::text(r#"{"type":"join","room":"a.b.>"}"#),
        ),
        (
            "invalid_room",
            Message::text(r#"{"type":"join","room":""}"#),
        ),
        (
            "text_too_large",
            Message::text(
                json!({"type":"send","room":"lobby","text":"x".repeat(16 << 10)}).to_string(),
            ),
        ),
        ("binary_frame", Message::binary(vec![0u8, 159, 146, 150])),
        (
            "not_a_member",
            Message::text(r#"{"type":"send","room":"elsewhere","text":"hi"}"#),
        ),
        (
            "invalid_client_msg_id",
            Message::text(
                json!({"type":"send","room":"lobby","text":"hi","client_msg_id":"c".repeat(200)})
                    .to_string(),
            ),
        ),
    ];
    for (i, (code, frame)) in table.into_iter().enumerate() {
        alice.send_raw(frame).await;
        let error = alice.expect(WAIT, is("error", None)).await.frame;
        assert_eq!(error["code"], code, "case {i}: {error}");
        assert!(!error["message"].as_str().unwrap_or_default().is_empty());
        let client_msg_id = format!("ok{i}");
        alice.say("lobby", "still here", &client_msg_id).await;
        let ack = alice.expect(WAIT, is("ack", None)).await.frame;
        assert_eq!(
            ack["client_msg_id"],
            client_msg_id.as_str(),
            "case {i}: connection works"
        );
    }
    // Room limit: lobby + one more, then refused.
    alice.join("second").await;
    alice.send(json!({"type": "join", "room": "third"})).await;
    assert_eq!(
        alice.expect(WAIT, is("error", None)).await.frame["code"],
        "too_many_rooms"
    );
    scrape::assert_sums(
        &transport.metrics().await,
        &[
            ("offpath_transport_frame_errors_total", "", 14.0),
            (
                "offpath_transport_frame_errors_total",
                r#"code="invalid_json""#,
                2.0,
            ),
        ],
    );
    transport.stop().await;
}

/// Sends limited to a burst of 3, then one every 2 s; 2 connections at most.
fn limited() -> offpath_transport::Config {
    offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            rate_per_second: 0.5,
            rate_burst: 3.0,
            max_connections: 2,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    }
}

/// Issue 26: a send costs one token per `--send-cost-bytes` of text. A 4 KiB text goes at
/// once (the bucket goes into debt), and the connection's next line is refused until the
/// refill has paid it back: long texts cost the moderators no more than lines at the rate.
#[tokio::test]
async fn long_texts_cost_the_send_rate_by_their_length() {
    let config = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            rate_per_second: 10.0,
            rate_burst: 20.0,
            send_cost_bytes: 64,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let mut alice = transport.joined("alice", "lobby").await;
    alice.say("lobby", &"ab ".repeat(1365), "long").await;
    alice.say("lobby", "hi", "short").await;
    let frames = alice.drain(Duration::from_millis(500)).await;
    let acks = frames.iter().filter(|r| r.frame["type"] == "ack").count();
    let limited = frames.iter().find(|r| r.frame["code"] == "rate_limited");
    assert_eq!(acks, 1, "the long text is accepted: {frames:?}");
    let limited = limited.expect("the line after it waits for the refill");
    assert!(
        limited.frame["message"]
            .as_str()
            .unwrap_or("")
            .contains("64 bytes")
    );
}

/// Past the rate limit a send is refused with `rate_limited`; past the connection limit a
/// new socket gets `too_many_connections` and close code 1013. Both are counted.
#[tokio::test]
async fn rate_and_connection_limits() {
    let (_server, transport) = chat::gateway(limited()).await;
    let mut alice = transport.joined("alice", "lobby").await;
    for i in 0..4 {
        alice.say("lobby", "hi", &format!("c{i}")).await;
    }
    let frames = alice.drain(Duration::from_millis(500)).await;
    let acks = frames.iter().filter(|r| r.frame["type"] == "ack").count();
    let limited: Vec<_> = frames
        .iter()
        .filter(|r| r.frame["code"] == "rate_limited")
        .collect();
    assert_eq!((acks, limited.len()), (3, 1), "{frames:?}");

    let _bob = transport.client("bob").await;
    let mut carol = transport.client("carol").await;
    let error = carol.expect(WAIT, is("error", None)).await.frame;
    assert_eq!(error["code"], "too_many_connections");
    let close = carol.expect(WAIT, is("_close", None)).await.frame;
    assert_eq!(close["code"], 1013);
    scrape::assert_sums(
        &transport.metrics().await,
        &[
            ("offpath_transport_frame_errors_total", "rate_limited", 1.0),
            (
                "offpath_transport_disconnects_total",
                "max_connections",
                1.0,
            ),
        ],
    );
    transport.stop().await;
}

/// A client that stops reading is disconnected as slow; the other members keep receiving
/// every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_disconnected_and_the_room_keeps_going() {
    let config = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            send_queue: 32,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let mut alice = transport.client("alice").await;
    let mut bob = transport.client("bob").await;
    // Carol joins and then never reads: a raw socket nobody polls.
    let (mut carol, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?user=carol", transport.public))
            .await
            .expect("connect");
    use futures::{SinkExt, StreamExt};
    carol
        .send(Message::text(r#"{"type":"join","room":"lobby"}"#))
        .await
        .expect("join");
    let joined = carol.next().await.expect("a frame").expect("joined");
    assert!(joined.to_text().expect("text").contains("joined"));
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.say("lobby", "warm-up", "w").await;
    bob.expect(WAIT, is("message", None)).await;
    // Enough bytes to fill carol's socket buffers and then her send queue.
    let text = "z".repeat(4000);
    let total = 3000;
    for i in 0..total {
        alice.say("lobby", &text, &format!("c{i}")).await;
        // Alice is a well-behaved client: she reads her acks as she goes.
        alice.expect(WAIT, is("ack", None)).await;
    }
    let mut received = 0;
    while received < total {
        bob.expect(WAIT, |f| {
            f["type"] == "message" && f["text"].as_str().map(str::len) == Some(4000)
        })
        .await;
        received += 1;
    }
    let metrics = transport.metrics().await;
    assert_eq!(
        scrape::metric(&metrics, "offpath_transport_slow_clients_total", ""),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        scrape::metric(
            &metrics,
            "offpath_transport_disconnects_total",
            "slow_client"
        ),
        1.0
    );
    // Carol's connection is torn down by its own task: give it a moment on a busy machine.
    let deadline = std::time::Instant::now() + WAIT;
    while scrape::metric(
        &transport.metrics().await,
        "offpath_transport_connections",
        "",
    ) != 2.0
    {
        assert!(std::time::Instant::now() < deadline, "carol still counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(carol);
    transport.stop().await;
}

/// Shutdown closes sockets with "going away" (1001) and flushes the outbox: every accepted
/// message is in the MODERATION stream afterwards.
#[tokio::test]
async fn shutdown_says_going_away_and_flushes_the_outbox() {
    let (server, transport) = chat::gateway(chat::transport_config()).await;
    let mut alice = transport.joined("alice", "lobby").await;
    for i in 0..50 {
        alice.say("lobby", "hello", &format!("c{i}")).await;
    }
    for _ in 0..50 {
        alice.expect(WAIT, is("ack", None)).await;
    }
    transport.stop().await;
    let close = alice.expect(WAIT, is("_close", None)).await.frame;
    assert_eq!(close["code"], 1001, "{close}");
    let js = async_nats::jetstream::new(testing::connect(&server).await);
    let mut stream = js.get_stream("MODERATION").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 50);
}

/// `--moderation inline` (the benchmark's coupled baseline): a send waits for the
/// moderator's verdict before fan-out, and a blocked message never reaches the room.
#[tokio::test]
async fn inline_mode_awaits_the_verdict_and_never_delivers_a_block() {
    let config = offpath_transport::Config {
        moderation: offpath_transport::ModerationConfig {
            mode: offpath_transport::Moderation::Inline,
            ..chat::transport_config().moderation
        },
        ..chat::transport_config()
    };
    let (_server, _moderator, transport) = chat::moderated(config).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    let blocked = alice
        .post("lobby", "you are a stupid worthless idiot", "c1")
        .await;
    let verdict = alice
        .expect(WAIT, is("verdict", Some(&blocked)))
        .await
        .frame;
    assert_eq!(verdict["action"], "block");
    alice.say("lobby", "see you at lunch", "c2").await;
    let clean = bob.expect(WAIT, is("message", None)).await.frame;
    assert_eq!(
        clean["text"], "see you at lunch",
        "the blocked message never arrived first"
    );
    let rest = bob.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter().all(|r| r.frame["id"] != blocked.as_str()),
        "{rest:?}"
    );
    let metrics = transport.metrics().await;
    assert_eq!(
        scrape::metric(
            &metrics,
            "offpath_transport_verdicts_total",
            r#"action="block""#
        ),
        1.0
    );
    transport.stop().await;
}
