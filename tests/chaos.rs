//! Chaos under steady chat load: a transport and two moderator processes on a real
//! nats-server while the moderators freeze for longer than the hold deadline, one is
//! killed, nats-server restarts and the streams are deleted. At the end every accepted
//! message has exactly one verdict from a model, no blocked message is left standing, and
//! nothing still visible was answered `expired`.

mod common;

use offpath_ops::cli::Millis;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use common::chat::{self, ChatClient, Transport};
use nix::sys::signal::Signal;
use offpath_harness::{scrape, testing};
use offpath_protocol::subject::{MODERATION_STREAM, VERDICTS_STREAM};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
/// Messages per second, all rooms together.
const RATE: u64 = 40;
const MESSAGES: usize = 1000;
/// The hold deadline of `kids` (a hold:fail_open room): the moderators are frozen for
/// longer, so held messages are released unmoderated and must still be classified later.
const HOLD_DEADLINE_MS: u64 = 1000;
const FREEZE_AT: usize = 40;
const THAW_AT: usize = 240; // 5 s frozen
const KILL_AT: usize = 360;
const NATS_RESTART_AT: usize = 480;
const DELETE_STREAMS_AT: usize = 700;

fn text(n: usize) -> (String, &'static str) {
    let room = if n.is_multiple_of(2) { "lobby" } else { "kids" };
    let text = if n.is_multiple_of(5) {
        format!("you are a stupid worthless idiot {n}")
    } else {
        format!("see you at the game tonight, bring snacks {n}")
    };
    (text, room)
}

/// Reads every frame `client` has until `done` says the collection is complete.
async fn collect_until(
    client: &mut ChatClient,
    frames: &mut Vec<Value>,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(frames) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not complete within {WAIT:?}"
        );
        for received in client.drain(Duration::from_millis(200)).await {
            frames.push(received.frame);
        }
    }
}

/// Ids acked to the sender, and the final (model) verdict of each id seen so far.
fn acked_and_verdicts(frames: &[Value]) -> (Vec<String>, HashMap<String, Vec<Value>>) {
    let mut acked = Vec::new();
    let mut verdicts: HashMap<String, Vec<Value>> = HashMap::new();
    for frame in frames {
        let id = frame["id"].as_str().unwrap_or_default().to_string();
        match frame["type"].as_str() {
            Some("ack") => acked.push(id),
            Some("verdict") if frame["action"] != "unmoderated" => {
                verdicts.entry(id).or_default().push(frame.clone())
            }
            _ => {}
        }
    }
    (acked, verdicts)
}

fn all_verdicts_in(frames: &[Value], expected: usize) -> bool {
    let (acked, verdicts) = acked_and_verdicts(frames);
    acked.len() == expected && acked.iter().all(|id| verdicts.contains_key(id))
}

/// A moderator outage longer than the hold deadline, a killed moderator, a nats-server
/// restart and deleted streams lose nothing and leave no blocked message standing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_survives_frozen_and_killed_moderators_a_nats_restart_and_deleted_streams() {
    let mut server = Some(chat::nats_with_topology().await);
    let first = server.as_ref().expect("server");
    let m1 = chat::moderator(first, &[]).await;
    let mut m2 = chat::moderator(first, &[]).await;
    let config = offpath_transport::Config {
        moderation: offpath_transport::ModerationConfig {
            hold_deadline: Millis::new(HOLD_DEADLINE_MS),
            room_policy: vec!["kids=hold:fail_open".parse().expect("rule")],
            ..chat::transport_config().moderation
        },
        ..chat::transport_config()
    };
    let transport = Transport::start(first, config).await;
    let mut alice = transport.client("alice").await;
    let mut bob = transport.client("bob").await;
    for room in ["lobby", "kids"] {
        alice.join(room).await;
        bob.join(room).await;
    }
    let (mut alice_frames, mut bob_frames) = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut restarted = None;
    for n in 0..MESSAGES {
        tick.tick().await;
        match n {
            FREEZE_AT => {
                m1.signal(Signal::SIGSTOP).expect("freeze the moderator");
                m2.signal(Signal::SIGSTOP).expect("freeze the moderator");
            }
            THAW_AT => {
                m1.signal(Signal::SIGCONT).expect("thaw the moderator");
                m2.signal(Signal::SIGCONT).expect("thaw the moderator");
            }
            KILL_AT => {
                m2.kill().expect("kill a moderator");
            }
            NATS_RESTART_AT => {
                let mut stopped = server.take().expect("server");
                stopped.kill().expect("kill nats-server");
                restarted = Some(tokio::task::spawn_blocking(move || {
                    stopped.restart().expect("restart nats-server");
                    stopped
                }));
            }
            DELETE_STREAMS_AT => {
                let back = restarted.take().expect("restarted").await.expect("join");
                // Deleting a stream deletes the requests in it: an operator's mistake
                // loses what was stored. Delete at a quiet moment (every verdict in) to
                // prove the services re-create the topology and carry on.
                collect_until(&mut alice, &mut alice_frames, |f| all_verdicts_in(f, n)).await;
                let js = jetstream::new(testing::connect(&back).await);
                server = Some(back);
                js.delete_stream(MODERATION_STREAM).await.expect("delete");
                js.delete_stream(VERDICTS_STREAM).await.expect("delete");
            }
            _ => {}
        }
        let (text, room) = text(n);
        alice.say(room, &text, &format!("c{n}")).await;
    }
    collect_until(&mut alice, &mut alice_frames, |f| {
        all_verdicts_in(f, MESSAGES)
    })
    .await;
    let (acked, verdicts) = acked_and_verdicts(&alice_frames);
    let blocked: HashSet<&String> = verdicts
        .iter()
        .filter(|(_, v)| v[0]["action"] == "block")
        .map(|(id, _)| id)
        .collect();
    for (id, applied) in &verdicts {
        assert_eq!(
            applied.len(),
            1,
            "{id}: exactly one applied verdict: {applied:?}"
        );
    }
    let expired: Vec<&Value> = alice_frames
        .iter()
        .filter(|f| f["type"] == "verdict" && f["reason"] == "expired")
        .collect();
    assert!(
        expired.is_empty(),
        "visible messages answered expired: {expired:?}"
    );
    assert!(
        blocked.len() >= MESSAGES / 5 * 8 / 10,
        "the insults were blocked: {} of {}",
        blocked.len(),
        MESSAGES / 5
    );
    // No blocked message left standing for the other member: each one bob was shown is
    // retracted.
    collect_until(&mut bob, &mut bob_frames, |frames| {
        let shown: HashSet<&str> = frames
            .iter()
            .filter(|f| f["type"] == "message")
            .filter_map(|f| f["id"].as_str())
            .collect();
        let retracted: HashSet<&str> = frames
            .iter()
            .filter(|f| f["type"] == "retract")
            .filter_map(|f| f["id"].as_str())
            .collect();
        blocked
            .iter()
            .all(|id| !shown.contains(id.as_str()) || retracted.contains(id.as_str()))
    })
    .await;
    assert_eq!(acked.len(), MESSAGES);
    let released = alice_frames
        .iter()
        .filter(|f| f["type"] == "verdict" && f["reason"] == "hold_deadline")
        .count();
    println!(
        "chaos: {} accepted, {} model verdicts, {} blocked, {released} held messages released \
         at the hold deadline and classified later, 0 expired",
        acked.len(),
        verdicts.len(),
        blocked.len()
    );
    let metrics = transport.metrics().await;
    assert_eq!(
        scrape::metric(&metrics, "offpath_transport_outbox_shed_total", ""),
        0.0,
        "nothing shed"
    );
    drop(m1);
    transport.stop().await;
}
