//! Defects found from outside, each proved fixed against real processes: two gateways left
//! at the default instance, a deleted verdict stream, and the oldest supported nats-server.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::chat::{self, ChatClient, ModeratorProcess, Transport, is, metric, try_http_get};
use offpath_harness::NatsServer;
use offpath_protocol::subject::VERDICTS_STREAM;
use offpath_protocol::topology::ensure;

const WAIT: Duration = Duration::from_secs(60);
const INSULT: &str = "you are a stupid worthless idiot";

/// Sends `text` from `client` to `room`; returns the id the gateway assigned.
async fn say(client: &mut ChatClient, room: &str, text: &str, tag: &str) -> String {
    client.say(room, text, tag).await;
    let ack = client
        .expect(WAIT, |f| f["type"] == "ack" && f["client_msg_id"] == tag)
        .await;
    ack.frame["id"].as_str().expect("id").to_string()
}

/// Waits until `/readyz` at `addr` answers `status`; returns the body.
async fn wait_readyz(addr: std::net::SocketAddr, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = try_http_get(addr, "/readyz")
            .await
            .unwrap_or((0, String::new()));
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} within {within:?}; last {got}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two gateways started with the default `--instance` each get a name of their own, so
/// each binds its own verdict consumer and gets every verdict of the messages it accepted:
/// every insult sent through either is retracted for the room's members there. (Rooms live
/// in one gateway; with a shared name each gateway got about half of its verdicts.)
#[tokio::test]
async fn two_gateways_at_the_default_instance_each_apply_every_verdict() {
    let server = chat::nats_with_topology().await;
    let _moderator = ModeratorProcess::start(&server, &[]).await;
    let one = Transport::start(&server, chat::transport_config()).await;
    let two = Transport::start(&server, chat::transport_config()).await;
    let (mut alice, mut carol) = (one.client("alice").await, one.client("carol").await);
    let (mut bob, mut dave) = (two.client("bob").await, two.client("dave").await);
    for client in [&mut alice, &mut carol, &mut bob, &mut dave] {
        client.join("lobby").await;
    }
    for (sender, watcher) in [(&mut alice, &mut carol), (&mut bob, &mut dave)] {
        let mut ids = Vec::new();
        for n in 0..6 {
            let text = format!("{INSULT} number {n}");
            ids.push(say(sender, "lobby", &text, &format!("i{n}")).await);
        }
        for id in &ids {
            watcher.expect(WAIT, is("retract", Some(id))).await;
            let verdict = sender.expect(WAIT, is("verdict", Some(id))).await.frame;
            assert_eq!(verdict["action"], "block", "{verdict}");
        }
    }
    let metrics = one.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "offpath_transport_verdict_consumer_shared_total",
            ""
        ),
        0.0,
        "no gateway found its consumer shared"
    );
    one.stop().await;
    two.stop().await;
}

/// Two gateways given the same `--instance` by mistake: the second finds the verdict
/// consumer already pulled, says so and counts it.
#[tokio::test]
async fn a_shared_instance_is_detected() {
    let server = chat::nats_with_topology().await;
    let named = || offpath_transport::Config {
        instance: "same".into(),
        ..chat::transport_config()
    };
    let one = Transport::start(&server, named()).await;
    let body = wait_readyz_body(one.ops, "verdict consumer bound").await;
    assert!(body.contains("ready"), "{body}");
    let two = Transport::start(&server, named()).await;
    wait_readyz_body(two.ops, "verdict consumer bound").await;
    let shared = metric(
        &two.metrics().await,
        "offpath_transport_verdict_consumer_shared_total",
        "",
    );
    assert_eq!(shared, 1.0, "the second gateway saw the first one pulling");
    one.stop().await;
    two.stop().await;
}

/// Waits until `/readyz` at `addr` mentions `text`; returns the body.
async fn wait_readyz_body(addr: std::net::SocketAddr, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok((_, body)) = try_http_get(addr, "/readyz").await
            && body.contains(text)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz never said {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A deleted `VERDICTS` stream is created again by the transport, which binds its consumer
/// again and applies the next verdicts; while a foreign stream squats the verdict subjects
/// (so the stream cannot be created) `/readyz` says the consumer is not bound.
#[tokio::test]
async fn a_deleted_verdict_stream_is_recreated_and_readiness_tells_when_it_cannot_be() {
    let server = chat::nats_with_topology().await;
    let _moderator = ModeratorProcess::start(&server, &[]).await;
    let transport = Transport::start(&server, chat::transport_config()).await;
    let mut alice = transport.client("alice").await;
    alice.join("lobby").await;
    let id = say(&mut alice, "lobby", INSULT, "before").await;
    alice.expect(WAIT, is("retract", Some(&id))).await;

    let js = jetstream::new(common::connect(&server).await);
    js.delete_stream(VERDICTS_STREAM).await.expect("delete");
    let id = say(&mut alice, "lobby", INSULT, "after-delete").await;
    alice.expect(WAIT, is("retract", Some(&id))).await;
    js.get_stream(VERDICTS_STREAM).await.expect("re-created");

    // A stream that takes the verdict subjects makes VERDICTS impossible to create.
    js.delete_stream(VERDICTS_STREAM).await.expect("delete");
    js.create_stream(jetstream::stream::Config {
        name: "SQUATTER".into(),
        subjects: vec!["offpath.verdict.>".into()],
        ..Default::default()
    })
    .await
    .expect("squatter");
    let body = wait_readyz(transport.ops, 503, Duration::from_secs(40)).await;
    assert!(body.contains("verdict consumer not bound"), "{body}");
    js.delete_stream("SQUATTER").await.expect("delete squatter");
    wait_readyz(transport.ops, 200, Duration::from_secs(30)).await;
    let id = say(&mut alice, "lobby", INSULT, "after-squatter").await;
    alice.expect(WAIT, is("retract", Some(&id))).await;
    transport.stop().await;
}

/// The whole chat path works on the oldest supported nats-server (Debian 12's 2.9.10,
/// linked as `.tools/oldest/bin/nats-server` by `scripts/bootstrap --oldest-nats`): the verdict consumer binds (its filter is
/// in the stream's shape) and an insult is retracted, a clean message allowed.
#[tokio::test]
async fn chat_is_moderated_on_the_oldest_supported_nats_server() {
    let binary =
        offpath_harness::find_project_tool("oldest/bin/nats-server").unwrap_or_else(|| {
            panic!("no .tools/oldest/bin/nats-server: run `scripts/bootstrap --oldest-nats`")
        });
    let server = NatsServer::builder()
        .binary(binary)
        .start()
        .unwrap_or_else(|err| panic!("cannot start the oldest nats-server: {err}"));
    let client = common::connect(&server).await;
    let version = client.server_info().version;
    assert!(version.starts_with("2.9."), "expected 2.9.x, got {version}");
    ensure(&jetstream::new(client), &common::topology())
        .await
        .expect("topology on 2.9");
    let _moderator = ModeratorProcess::start(&server, &[]).await;
    let transport = Transport::start(&server, chat::transport_config()).await;
    let mut alice = transport.client("alice").await;
    alice.join("lobby").await;
    let clean = say(
        &mut alice,
        "lobby",
        "thanks a lot, see you tomorrow",
        "clean",
    )
    .await;
    let insult = say(&mut alice, "lobby", INSULT, "insult").await;
    let verdict = alice.expect(WAIT, is("verdict", Some(&clean))).await.frame;
    assert_eq!(verdict["action"], "allow", "{verdict}");
    alice.expect(WAIT, is("retract", Some(&insult))).await;
    let (status, body) = try_http_get(transport.ops, "/readyz")
        .await
        .expect("readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("verdict consumer bound"), "{body}");
    transport.stop().await;
}
