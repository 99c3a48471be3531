//! Chat goes on when NATS is down or the moderator hangs: real nats-server (killed and
//! restarted), a real moderator process (frozen with SIGSTOP), the transport in process.

use crate::common;

use offpath_ops::cli::Millis;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::chat::{self, ChatClient, is};
use nix::sys::signal::Signal;
use offpath_harness::{http, scrape};

const WAIT: Duration = Duration::from_secs(60);

/// Sends `n` messages from `alice` to `lobby` at one per millisecond and returns the
/// latency of each (send → `message` frame at `bob`), sorted, and the ids assigned.
async fn chat_burst(
    alice: &mut ChatClient,
    bob: &mut ChatClient,
    tag: &str,
    n: usize,
) -> (Vec<Duration>, Vec<String>) {
    let mut sent_at = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..n {
        tick.tick().await;
        let text = format!("{tag}-{i}");
        sent_at.insert(text.clone(), Instant::now());
        alice.say("lobby", &text, &text).await;
    }
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let received = bob
            .expect(WAIT, |f| {
                f["type"] == "message" && f["text"].as_str().is_some_and(|t| t.starts_with(tag))
            })
            .await;
        let text = received.frame["text"].as_str().expect("text");
        let sent = sent_at.remove(text).expect("each message once");
        latencies.push(received.at.duration_since(sent));
    }
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let ack = alice
            .expect(WAIT, |f| {
                f["type"] == "ack"
                    && f["client_msg_id"]
                        .as_str()
                        .is_some_and(|c| c.starts_with(tag))
            })
            .await;
        ids.push(ack.frame["id"].as_str().expect("id").to_string());
    }
    latencies.sort();
    (latencies, ids)
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0
}

/// Waits until `alice` has a verdict frame for each of `ids`; returns them by id.
async fn verdicts_for(
    alice: &mut ChatClient,
    ids: &[String],
) -> HashMap<String, serde_json::Value> {
    let wanted: HashSet<&String> = ids.iter().collect();
    let mut got = HashMap::new();
    while got.len() < wanted.len() {
        let verdict = alice
            .expect(WAIT, |f| {
                f["type"] == "verdict"
                    && f["id"]
                        .as_str()
                        .is_some_and(|id| wanted.contains(&id.to_string()))
            })
            .await
            .frame;
        got.insert(verdict["id"].as_str().expect("id").to_string(), verdict);
    }
    got
}

/// With nats-server killed, 1,000 sends still fan out (latency measured against 1,000 with
/// NATS up, printed); the outbox fills to its bound and sheds with a counter (the shed
/// messages' senders are told `unmoderated`); after a restart every request the outbox held
/// is stored and moderated: every message ends with exactly one verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_chat_goes_on_and_the_outbox_catches_up() {
    let config = offpath_transport::Config {
        outbox: offpath_transport::OutboxConfig {
            outbox_capacity: 200,
            outbox_in_flight: 16,
            ..chat::transport_config().outbox
        },
        limits: offpath_transport::LimitsConfig {
            // Alice gets two frames per message (ack, verdict) at 1,000 messages/s: with the
            // default queue of 256, a test runtime starved of CPU for a quarter second (other
            // tests run beside this one) would be closed as a slow client. Slow clients have
            // tests of their own; this one is about NATS going away.
            send_queue: 8192,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (mut server, _moderator, transport) = chat::moderated(config).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;

    let (up, up_ids) = chat_burst(&mut alice, &mut bob, "up", 1000).await;
    verdicts_for(&mut alice, &up_ids).await;

    server.kill().expect("kill nats-server");
    // Polled until it says so; every answer on the way must be 200.
    let (status, body) = http::wait_until(transport.ops, "/readyz", WAIT, |status, body| {
        status != 200 || body.contains("NATS disconnected")
    })
    .await
    .unwrap_or_else(|(_, body)| panic!("readyz never reported NATS down: {body}"));
    assert_eq!(
        status, 200,
        "NATS down does not make the gateway unready: {body}"
    );
    let (down, down_ids) = chat_burst(&mut alice, &mut bob, "down", 1000).await;
    eprintln!(
        "send -> delivered, 1,000 msgs at 1/ms: NATS up p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
         NATS down p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        pct(&up, 0.5),
        pct(&up, 0.99),
        pct(&up, 1.0),
        pct(&down, 0.5),
        pct(&down, 0.99),
        pct(&down, 1.0)
    );
    let metrics = transport.metrics().await;
    let shed = scrape::metric(
        &metrics,
        "offpath_transport_outbox_shed_total",
        r#"reason="full""#,
    );
    let depth = scrape::metric(&metrics, "offpath_transport_outbox_depth", "");
    eprintln!("NATS down: shed {shed}, outbox depth {depth}");
    assert!(shed >= 1000.0 - 200.0 - 16.0, "shed {shed}");
    assert_eq!(shed + depth, 1000.0, "every request is either held or shed");

    let server = tokio::task::spawn_blocking(move || {
        server.restart().expect("restart nats-server");
        server
    })
    .await
    .expect("join");
    let verdicts = verdicts_for(&mut alice, &down_ids).await;
    let outbox_full = verdicts
        .values()
        .filter(|v| v["action"] == "unmoderated" && v["reason"] == "outbox_full")
        .count();
    assert_eq!(
        outbox_full as f64, shed,
        "each shed message is reported to its sender"
    );
    scrape::assert_sums(
        &transport.metrics().await,
        &[
            ("offpath_transport_outbox_depth", "", 0.0),
            (
                "offpath_transport_outbox_published_total",
                "",
                2000.0 - shed,
            ),
        ],
    );
    transport.stop().await;
    drop(server);
}

/// With the moderator frozen (SIGSTOP, a real hang) chat goes on: post-moderated messages
/// are delivered at once, the sender stays responsive, and held messages are released by
/// the deadline policy (fail-open delivered, fail-closed dropped). After SIGCONT the
/// moderator catches up and every message gets its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderator_hung_chat_goes_on_and_holds_follow_the_deadline_policy() {
    let config = offpath_transport::Config {
        moderation: offpath_transport::ModerationConfig {
            hold_deadline: Millis::new(1_500),
            room_policy: vec![
                "kids=hold:fail_open".parse().expect("rule"),
                "vault=hold:fail_closed".parse().expect("rule"),
            ],
            ..chat::transport_config().moderation
        },
        ..chat::transport_config()
    };
    let (_server, moderator, transport) = chat::moderated(config).await;
    let mut alice = transport.client("alice").await;
    let mut bob = transport.client("bob").await;
    for room in ["kids", "vault", "lobby"] {
        alice.join(room).await;
        bob.join(room).await;
    }

    // Healthy: a held message is delivered once allowed.
    alice.say("kids", "have a nice day", "k1").await;
    let ack = alice.expect(WAIT, is("ack", None)).await.frame;
    assert_eq!(ack["held"], true);
    let k1 = ack["id"].as_str().expect("id").to_string();
    let verdict = alice.expect(WAIT, is("verdict", Some(&k1))).await;
    assert_eq!(verdict.frame["action"], "allow");
    bob.expect(WAIT, is("message", Some(&k1))).await;

    moderator
        .signal(Signal::SIGSTOP)
        .expect("freeze the moderator");
    let frozen = Instant::now();
    alice.say("kids", "is anyone there", "k2").await;
    alice.say("vault", "the code is 1234", "v2").await;
    let k2 = alice.expect(WAIT, is("ack", None)).await.frame["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v2 = alice.expect(WAIT, is("ack", None)).await.frame["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut lobby = Vec::new();
    for i in 0..20 {
        alice
            .say("lobby", &format!("chat goes on {i}"), &format!("l{i}"))
            .await;
        lobby.push(
            alice.expect(WAIT, is("ack", None)).await.frame["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let last_lobby = bob.expect(WAIT, is("message", Some(&lobby[19]))).await.at;
    let released = bob.expect(WAIT, is("message", Some(&k2))).await.at;
    eprintln!(
        "moderator frozen: 20 lobby messages delivered {:.1} ms after the freeze; the held \
         kids message released by its deadline after {:.1} ms",
        last_lobby.duration_since(frozen).as_secs_f64() * 1000.0,
        released.duration_since(frozen).as_secs_f64() * 1000.0
    );
    assert!(
        last_lobby < released,
        "post-moderated chat does not wait for the hold"
    );
    for id in [&k2, &v2] {
        let verdict = alice.expect(WAIT, is("verdict", Some(id))).await.frame;
        assert_eq!(verdict["action"], "unmoderated");
        assert_eq!(verdict["reason"], "hold_deadline");
    }
    let rest = bob.drain(Duration::from_millis(500)).await;
    assert!(
        rest.iter().all(|r| r.frame["id"] != v2.as_str()),
        "the fail-closed room never shows its unmoderated message: {rest:?}"
    );

    moderator
        .signal(Signal::SIGCONT)
        .expect("thaw the moderator");
    let verdicts = verdicts_for(&mut alice, &lobby).await;
    assert!(
        verdicts.values().all(|v| v["action"] == "allow"),
        "{verdicts:?}"
    );
    let metrics = transport.metrics().await;
    let settled = |outcome: &str| {
        scrape::metric(
            &metrics,
            "offpath_transport_hold_settled_total",
            &format!(r#"outcome="{outcome}""#),
        )
    };
    assert_eq!(settled("allowed"), 1.0);
    assert_eq!(settled("deadline_delivered"), 1.0);
    assert_eq!(settled("deadline_dropped"), 1.0);
    assert_eq!(
        scrape::metric(&metrics, "offpath_transport_held_messages", ""),
        0.0
    );
    transport.stop().await;
}
