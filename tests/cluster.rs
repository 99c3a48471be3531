//! A NATS cluster losing nodes under steady chat load: three nats-server nodes with R3
//! streams, the transport in this process connected with all three URLs, two moderator
//! processes, and websocket clients chatting at a steady rate. The node the transport is
//! connected to is killed (SIGKILL) and restarted, then the MODERATION stream's leader.
//! At the end every message sent was acked, delivered to the room and answered by exactly
//! one verdict; the transport reconnected to a surviving node. The figures (delivery p99
//! during each kill, time until verdicts flow again) are printed for the notes.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::BIN;
use common::chat::{self, ChatClient, Received};
use futures::StreamExt;
use offpath_harness::{NatsCluster, Proc, process, topology};
use offpath_protocol::subject::{DLQ_STREAM, MODERATION_STREAM, VERDICTS_STREAM};
use offpath_protocol::topology::TopologyConfig;

/// Messages per second, sent by alice to the room bob is in.
const RATE: u64 = 50;
const MESSAGES: usize = 900;
/// When (message number) the transport's node is killed, and restarted.
const KILL_CONNECTED_AT: usize = 150;
const RESTART_CONNECTED_AT: usize = 350;
/// When the MODERATION stream's leader is killed, and restarted.
const KILL_LEADER_AT: usize = 500;
const RESTART_LEADER_AT: usize = 700;
/// Messages sent within this long after a kill count as sent "during" it.
const DURING: Duration = Duration::from_secs(3);
/// How long the verdicts may take to come in after the last message.
const WAIT: Duration = Duration::from_secs(30);
/// A delivery slower than this is a stall: delivery is the transport's in-process fan-out,
/// which must not wait for NATS (a generous bound for a loaded 2-core machine).
const STALL: Duration = Duration::from_secs(5);

/// How long the moderators' consumer waits for an ack before delivering a request again.
/// Requests on their way to a moderator when a node dies are lost in transit and come back
/// only after this (the default, 30 s, would make the test take over a minute: the figure
/// "verdicts flow again" is at most about this long).
const ACK_WAIT: Duration = Duration::from_secs(5);

/// The test topology with three replicas of every stream and [`ACK_WAIT`].
fn r3() -> TopologyConfig {
    TopologyConfig {
        replicas: 3,
        ack_wait: ACK_WAIT,
        ..topology::small()
    }
}

/// A client connected with every node's URL (reconnects go to any of them).
async fn connect(urls: &[String]) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(servers(urls))
        .await
        .expect("connect to the cluster")
}

/// Message `n`'s text: every fifth an insult.
fn text(n: usize) -> String {
    match n % 5 {
        0 => format!("you are a stupid worthless idiot {n}"),
        _ => format!("see you at the game tonight, bring snacks {n}"),
    }
}

/// Every node's address.
fn servers(urls: &[String]) -> Vec<async_nats::ServerAddr> {
    urls.iter().map(|u| u.parse().expect("a URL")).collect()
}

/// `offpath moderator` against the cluster (R3 topology), ready.
async fn moderator(urls: &[String]) -> Proc {
    let ops = process::concrete_addr(([127, 0, 0, 1], 0).into()).expect("a free port");
    let mut command = Command::new(BIN);
    command
        .args(["moderator", "--nats-url", &urls.join(",")])
        .arg(format!("--metrics-addr={ops}"))
        .args(["--inference-threads=1", "--max-wait-ms=2", "--replicas=3"])
        .arg(format!("--stream-max-bytes={}", topology::STREAM_BYTES))
        .env("OFFPATH_LOG", "warn");
    let mut moderator = Proc::start("moderator", command, ops).expect("spawn offpath moderator");
    moderator
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("the moderator is ready");
    moderator
}

/// The transport in this process on `client`; its `/ws` address.
async fn transport(client: async_nats::Client) -> std::net::SocketAddr {
    let config = offpath_transport::Config {
        topology: r3(),
        ..chat::transport_config()
    };
    let public = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let operator = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = public.local_addr().expect("addr");
    tokio::spawn(offpath_transport::run(
        config,
        client,
        offpath_transport::Listeners { public, operator },
        std::sync::Arc::new(offpath_transport::QueryUser),
        std::future::pending(),
    ));
    addr
}

/// The node `client` is connected to.
fn connected_node(cluster: &NatsCluster, client: &async_nats::Client) -> Option<usize> {
    cluster.index_of_port(client.server_info().port)
}

/// What the clients saw: per tag the send time, per id the tag, delivery and verdicts.
#[derive(Default)]
struct Seen {
    sent: HashMap<String, Instant>,
    id_of: HashMap<String, String>,
    delivered: HashMap<String, Instant>,
    verdicts: HashMap<String, Vec<Received>>,
    /// Dead letters by request id: their reasons.
    dead: HashMap<String, Vec<String>>,
    /// The next `MODERATION_DLQ` sequence to read.
    dlq_next: u64,
}

impl Seen {
    fn absorb(&mut self, alice: Vec<Received>, bob: Vec<Received>) {
        for r in alice {
            let id = r.frame["id"].as_str().unwrap_or_default().to_string();
            match r.frame["type"].as_str() {
                Some("ack") => {
                    let tag = r.frame["client_msg_id"].as_str().unwrap_or_default();
                    self.id_of.insert(id, tag.to_string());
                }
                Some("verdict") => self.verdicts.entry(id).or_default().push(r),
                _ => {}
            }
        }
        for r in bob {
            if r.frame["type"] == "message" {
                let id = r.frame["id"].as_str().unwrap_or_default().to_string();
                self.delivered.entry(id).or_insert(r.at);
            }
        }
    }

    /// Reads the dead letters stored since the last call (they reach no chat client).
    async fn read_dead_letters(&mut self, js: &jetstream::Context) {
        let Ok(mut stream) = js.get_stream(DLQ_STREAM).await else {
            return;
        };
        let Ok(info) = stream.info().await else {
            return;
        };
        let last = info.state.last_sequence;
        while self.dlq_next <= last {
            let Ok(message) = stream.get_raw_message(self.dlq_next).await else {
                return;
            };
            self.dlq_next += 1;
            let letter: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("dead letter JSON");
            let id = letter["id"].as_str().unwrap_or_default().to_string();
            let reason = letter["reason"].as_str().unwrap_or_default().to_string();
            self.dead.entry(id).or_default().push(reason);
        }
    }

    /// Whether `id` has a verdict or a dead letter.
    fn answered(&self, id: &str) -> bool {
        self.verdicts.contains_key(id) || self.dead.contains_key(id)
    }

    fn complete(&self) -> bool {
        self.id_of.len() == MESSAGES
            && self.id_of.keys().all(|id| self.answered(id))
            && self.id_of.keys().all(|id| self.delivered.contains_key(id))
    }

    /// Delivery latency of each id sent in `[from, from + DURING)` (all when `None`).
    fn delivery(&self, from: Option<Instant>) -> Vec<Duration> {
        let mut out: Vec<Duration> = self
            .id_of
            .iter()
            .filter_map(|(id, tag)| Some((self.sent[tag], *self.delivered.get(id)?)))
            .filter(|(sent, _)| from.is_none_or(|f| *sent >= f && *sent < f + DURING))
            .map(|(sent, at)| at - sent)
            .collect();
        out.sort();
        out
    }

    /// From `kill` to the first verdict for a message sent after it.
    fn verdicts_again(&self, kill: Instant) -> Option<Duration> {
        self.id_of
            .iter()
            .filter(|(_, tag)| self.sent[*tag] >= kill)
            .filter_map(|(id, _)| self.verdicts.get(id).map(|v| v[0].at))
            .min()
            .map(|at| at - kill)
    }
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted
        .get((sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

async fn drain(alice: &mut ChatClient, bob: &mut ChatClient, seen: &mut Seen, wait: Duration) {
    let a = alice.drain(wait).await;
    let b = bob.drain(Duration::ZERO).await;
    seen.absorb(a, b);
}

/// Killing the transport's node and then the MODERATION stream's leader (each restarted)
/// under steady chat load loses no request, answers each message with exactly one
/// verdict, never stalls delivery, and the transport reconnects to a surviving node.
///
/// It found a real loss, now fixed: while the first kill's failover lasts (~6 s) the
/// moderators' verdict publishes fail ("no stream found for given subject"); `finish`
/// nak'ed each such request at once, spending all `max_deliver` (5) deliveries inside the
/// failover, and the server then gave up on it: no verdict, no dead letter (7 to 92 of 900
/// in failing runs, about one run in 15-20). The moderator now retries the publish for up
/// to 30 s first (`services/moderator/src/publish.rs`); 7 of 7 runs passed after the fix.
/// Still outside the suite until it has passed many more runs on a loaded 2-core machine
/// (one earlier run also failed to find the stream leader within 10 s, now 15 s). Run it
/// with `--run-ignored all`.
#[ignore = "25-30 s; kept out of CI until more runs confirm the fix of the loss it found"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_survives_killing_the_connected_node_and_the_stream_leader() {
    let mut cluster = NatsCluster::start().expect("a 3-node cluster");
    let urls = cluster.urls();
    let observer = connect(&urls).await;
    cluster
        .wait_for_meta_leader(&observer)
        .await
        .expect("meta leader");
    let js = jetstream::new(observer.clone());
    offpath_protocol::topology::ensure(&js, &r3())
        .await
        .expect("R3 topology");
    let _m1 = moderator(&urls).await;
    let _m2 = moderator(&urls).await;
    let client = connect(&urls).await;
    let public = transport(client.clone()).await;
    let (mut alice, mut bob) = (
        ChatClient::connect(public, "alice").await,
        ChatClient::connect(public, "bob").await,
    );
    alice.join("lobby").await;
    bob.join("lobby").await;

    let mut seen = Seen {
        dlq_next: 1,
        ..Seen::default()
    };
    let mut kills: Vec<(&str, usize, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    for n in 0..MESSAGES {
        tick.tick().await;
        match n {
            KILL_CONNECTED_AT => {
                let node = connected_node(&cluster, &client).expect("transport's node");
                cluster.kill(node).expect("kill");
                kills.push(("connected node", node, Instant::now()));
            }
            KILL_LEADER_AT => {
                let leader = cluster
                    .stream_leader(&js, MODERATION_STREAM, Duration::from_secs(15))
                    .await
                    .unwrap_or_else(|err| panic!("MODERATION leader: {err}"));
                cluster.kill(leader).expect("kill");
                kills.push(("MODERATION leader", leader, Instant::now()));
            }
            RESTART_CONNECTED_AT | RESTART_LEADER_AT => {
                let node = kills.last().expect("a kill").1;
                tokio::task::block_in_place(|| cluster.restart(node)).expect("restart");
            }
            _ => {}
        }
        if n == KILL_CONNECTED_AT + RATE as usize {
            let now = connected_node(&cluster, &client);
            assert_ne!(now, Some(kills[0].1), "reconnected to a surviving node");
            eprintln!("cluster: transport reconnected to node {now:?}");
        }
        let tag = format!("c{n}");
        let text = text(n);
        seen.sent.insert(tag.clone(), Instant::now());
        alice.say("lobby", &text, &tag).await;
        if n % 25 == 0 {
            drain(&mut alice, &mut bob, &mut seen, Duration::ZERO).await;
        }
    }
    let deadline = Instant::now() + WAIT;
    while !seen.complete() && Instant::now() < deadline {
        drain(&mut alice, &mut bob, &mut seen, Duration::from_millis(200)).await;
        seen.read_dead_letters(&js).await;
    }
    // Late duplicates would arrive now.
    drain(&mut alice, &mut bob, &mut seen, Duration::from_secs(1)).await;
    seen.read_dead_letters(&js).await;
    report(&seen, &kills);
    if !seen.complete() {
        diagnose(&seen, &js).await;
    }
    check(&seen);
}

/// How many dead letters per reason.
fn dead_reasons(seen: &Seen) -> std::collections::BTreeMap<&str, usize> {
    let mut reasons = std::collections::BTreeMap::new();
    for reason in seen.dead.values().flatten() {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    reasons
}

fn report(seen: &Seen, kills: &[(&str, usize, Instant)]) {
    let all = seen.delivery(None);
    eprintln!(
        "cluster: {} sent, {} acked, {} delivered, {} with a verdict, {} dead-lettered {:?}; \
         delivery p99 {:?}, max {:?}",
        seen.sent.len(),
        seen.id_of.len(),
        seen.delivered.len(),
        seen.verdicts.len(),
        seen.dead.len(),
        dead_reasons(seen),
        p99(&all),
        all.last().copied().unwrap_or_default()
    );
    for (what, node, at) in kills {
        let during = seen.delivery(Some(*at));
        eprintln!(
            "cluster: kill -9 {what} (node {node}): delivery p99 {:?} over {} messages in the \
             next {DURING:?}; verdicts flow again after {:?} (ack_wait {ACK_WAIT:?})",
            p99(&during),
            during.len(),
            seen.verdicts_again(*at)
        );
    }
}

/// What the moderators' consumer holds, and which messages lack a verdict.
async fn diagnose(seen: &Seen, js: &jetstream::Context) {
    let mut missing: Vec<usize> = seen
        .id_of
        .iter()
        .filter(|(id, _)| !seen.answered(id))
        .filter_map(|(_, tag)| tag[1..].parse().ok())
        .collect();
    missing.sort();
    eprintln!("cluster: no verdict for messages {missing:?}");
    // Does VERDICTS remember a verdict it does not hold? A probe with a missing verdict's
    // de-duplication key says whether the server would drop it as a duplicate.
    let id_of_tag: HashMap<&String, &String> = seen.id_of.iter().map(|(i, t)| (t, i)).collect();
    for n in missing.iter().take(3) {
        let tag = format!("c{n}");
        let id = id_of_tag[&tag];
        let key = format!("acme/{id}/{}", offpath_protocol::text_sha256(&text(*n)));
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload("probe".into())
            .message_id(key);
        let ack = match js.send_publish("offpath.verdict.acme.lobby", publish).await {
            Ok(ack) => ack.await.map(|a| a.duplicate).map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        eprintln!("cluster: a probe with message {n}'s verdict key: duplicate = {ack:?}");
    }
    if let Ok(stream) = js.get_stream(MODERATION_STREAM).await
        && let Ok(info) = stream
            .consumer_info(offpath_protocol::subject::MODERATOR_CONSUMER)
            .await
    {
        eprintln!(
            "cluster: consumer moderator: pending {}, ack pending {}, redelivered {}, \
             delivered {:?}, acked {:?}",
            info.num_pending,
            info.num_ack_pending,
            info.num_redelivered,
            info.delivered,
            info.ack_floor
        );
    }
    if let Ok(mut stream) = js.get_stream(VERDICTS_STREAM).await {
        if let Ok(info) = stream.info().await {
            eprintln!("cluster: VERDICTS holds {} verdicts", info.state.messages);
        }
        let mut names = stream.consumer_names();
        while let Some(Ok(name)) = names.next().await {
            if let Ok(info) = stream.consumer_info(&name).await {
                eprintln!(
                    "cluster: consumer {name} ({:?}): pending {}, ack pending {}, \
                     redelivered {}, delivered {}, ack floor {}",
                    info.config.ack_policy,
                    info.num_pending,
                    info.num_ack_pending,
                    info.num_redelivered,
                    info.delivered.stream_sequence,
                    info.ack_floor.stream_sequence
                );
            }
        }
    }
}

fn check(seen: &Seen) {
    assert_eq!(seen.id_of.len(), MESSAGES, "every message acked");
    let missing: Vec<&String> = seen
        .id_of
        .iter()
        .filter(|(id, _)| !seen.answered(id))
        .map(|(_, tag)| tag)
        .collect();
    assert!(
        missing.is_empty(),
        "no verdict or dead letter for {missing:?}"
    );
    for id in seen.id_of.keys() {
        let frames: Vec<_> = seen
            .verdicts
            .get(id)
            .into_iter()
            .flatten()
            .map(|r| &r.frame)
            .collect();
        let dead = seen.dead.get(id).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            frames.len() + dead.len(),
            1,
            "{id}: exactly one verdict or dead letter: {frames:?} {dead:?}"
        );
        if let Some(frame) = frames.first() {
            assert_ne!(frame["action"], "unmoderated", "{id}: {frame:?}");
        }
    }
    let undelivered = seen
        .id_of
        .keys()
        .filter(|id| !seen.delivered.contains_key(*id))
        .count();
    assert_eq!(undelivered, 0, "every message delivered to the room");
    let max = seen.delivery(None).last().copied().unwrap_or_default();
    assert!(max < STALL, "delivery stalled for {max:?}");
}
