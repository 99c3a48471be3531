//! The self-healing consumer against real nats-servers: it binds and delivers; a deleted
//! consumer and a deleted stream are put back and delivery resumes; a pull whose consumer
//! leader dies (a cluster node killed; the client stays connected) is replaced long before
//! its request would have expired. Each of these fails when its healing is taken out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};
use offpath_harness::{NatsCluster, testing, topology};
use offpath_jetstream::{Consumer, GaveUp, Hooks, PullAgain, Settings, Target, Unbound};
use offpath_protocol::subject::{
    MODERATION_STREAM, MODERATOR_CONSUMER, VERDICTS_STREAM, request_subject, verdict_subject,
};

/// How long a message may take to come when nothing is being healed.
const QUICK: Duration = Duration::from_secs(10);

/// What the hooks were told, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Bound { again: bool },
    Unbound,
    Lost(String),
    PulledAgain(PullAgain),
    PullError,
}

/// Hooks that record every event; with `create`, the consumer is created with it (the
/// transport's way) instead of by the topology (the moderator's).
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    create: Option<pull::Config>,
}

impl Recorder {
    fn push(&self, event: Event) {
        self.events.lock().expect("events").push(event);
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }
}

impl Hooks for Recorder {
    fn create_config(&mut self) -> Option<pull::Config> {
        self.create.clone()
    }
    fn bound(&mut self, _info: &consumer::Info, again: bool) {
        self.push(Event::Bound { again });
    }
    fn unbound(&mut self, _reason: &Unbound) {
        self.push(Event::Unbound);
    }
    fn lost(&mut self, reason: &Unbound) {
        self.push(Event::Lost(reason.to_string()));
    }
    fn pulled_again(&mut self, why: PullAgain) {
        self.push(Event::PulledAgain(why));
    }
    fn pull_error(&mut self, _error: &pull::MessagesError) {
        self.push(Event::PullError);
    }
}

/// The moderators' consumer: `moderator` on `MODERATION`, created by the topology.
fn moderation() -> Target {
    Target {
        stream: MODERATION_STREAM.into(),
        consumer: MODERATOR_CONSUMER.into(),
        topology: topology::small(),
    }
}

/// A consumer of [`moderation`] with the default settings, and the recorder of its events.
fn moderation_consumer(js: &jetstream::Context) -> (Consumer<Recorder>, Recorder) {
    let recorder = Recorder::default();
    let consumer = Consumer::new(
        js.clone(),
        moderation(),
        Settings::default(),
        recorder.clone(),
    );
    (consumer, recorder)
}

/// A transport-like consumer on `VERDICTS`, created by the library from the hooks' config.
fn verdicts(recorder: &mut Recorder) -> Target {
    recorder.create = Some(pull::Config {
        durable_name: Some("healing".into()),
        filter_subject: "offpath.verdict.acme.*".into(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    });
    Target {
        stream: VERDICTS_STREAM.into(),
        consumer: "healing".into(),
        topology: topology::small(),
    }
}

async fn publish(js: &jetstream::Context, subject: String, payload: &'static str) {
    js.publish(subject, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// The next message's payload within `within` (acked), or a panic saying what was seen.
async fn next_payload<H: Hooks>(consumer: &mut Consumer<H>, within: Duration) -> String {
    let message = tokio::time::timeout(within, consumer.next())
        .await
        .unwrap_or_else(|_| panic!("no message within {within:?}"))
        .expect("never gives up");
    message.ack().await.expect("ack");
    String::from_utf8_lossy(&message.payload).into_owned()
}

/// Bound at the first `next`, the consumer hands out what is published, in order, and
/// reports one first bind.
#[tokio::test]
async fn binds_and_delivers() {
    let (server, client) = testing::nats_with(&topology::small()).await;
    let _server = server;
    let js = jetstream::new(client);
    let (mut consumer, recorder) = moderation_consumer(&js);
    assert!(!consumer.is_bound());
    let subject = request_subject("acme");
    publish(&js, subject.clone(), "one").await;
    publish(&js, subject, "two").await;
    assert_eq!(next_payload(&mut consumer, QUICK).await, "one");
    assert_eq!(next_payload(&mut consumer, QUICK).await, "two");
    assert!(consumer.is_bound());
    assert_eq!(recorder.events(), [Event::Bound { again: false }]);
}

/// A consumer deleted while bound is lost, re-created (by the topology) and bound again;
/// what was published meanwhile is delivered.
#[tokio::test]
async fn a_deleted_consumer_is_recreated_and_delivery_resumes() {
    let (server, client) = testing::nats_with(&topology::small()).await;
    let _server = server;
    let js = jetstream::new(client);
    let (mut consumer, recorder) = moderation_consumer(&js);
    let subject = request_subject("acme");
    publish(&js, subject.clone(), "before").await;
    assert_eq!(next_payload(&mut consumer, QUICK).await, "before");

    let stream = js.get_stream(MODERATION_STREAM).await.expect("stream");
    stream
        .delete_consumer(MODERATOR_CONSUMER)
        .await
        .expect("delete");
    publish(&js, subject, "meanwhile").await;
    assert_eq!(next_payload(&mut consumer, QUICK).await, "meanwhile");
    stream
        .consumer_info(MODERATOR_CONSUMER)
        .await
        .expect("re-created");
    let events = recorder.events();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::Bound { again: false },
                ..,
                Event::Lost(_),
                Event::Bound { again: true }
            ]
        ),
        "{events:?}"
    );
}

/// A consumer that disappears while no pull of ours waits on it (taken out of the server's
/// store across a restart: no "consumer deleted" reaches the client) is found lost at the
/// first silence and bound again. Pulls to a consumer that does not exist hear "no
/// responders", which the leaderless grace waits out, and a silence between two of them
/// starts that grace anew; a suite run once saw the transport's `/readyz` say "bound" for
/// 40 s while its verdict stream was gone.
#[tokio::test]
async fn a_consumer_gone_without_a_word_is_found_lost() {
    let (mut server, client) = testing::nats_with(&topology::small()).await;
    let js = jetstream::new(client);
    let (mut consumer, recorder) = moderation_consumer(&js);
    let subject = request_subject("acme");
    publish(&js, subject.clone(), "before").await;
    assert_eq!(next_payload(&mut consumer, QUICK).await, "before");

    server.stop().expect("stop nats-server");
    let consumer_dir = server
        .store_dir()
        .join("jetstream/$G/streams")
        .join(MODERATION_STREAM)
        .join("obs")
        .join(MODERATOR_CONSUMER);
    std::fs::remove_dir_all(&consumer_dir)
        .unwrap_or_else(|e| panic!("remove {}: {e}", consumer_dir.display()));
    server.restart().expect("restart nats-server");
    // Stored once the client has reconnected and JetStream has recovered its streams.
    let stored = async {
        loop {
            if let Ok(ack) = js.publish(subject.clone(), "after".into()).await
                && ack.await.is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(QUICK, stored)
        .await
        .expect("published after the restart");
    // "before" again first, when its ack was lost with the consumer's state.
    let mut seen = next_payload(&mut consumer, Duration::from_secs(30)).await;
    if seen == "before" {
        seen = next_payload(&mut consumer, QUICK).await;
    }
    assert_eq!(seen, "after");
    // Found at the first silence, not after pulls heard "no responders" for the leaderless
    // grace (before the lookup on silence: 10 s of them, which a silence between two of them
    // could start anew).
    let events = recorder.events();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::Bound { again: false },
                Event::PulledAgain(PullAgain::Silent),
                Event::Lost(_),
                ..,
                Event::Bound { again: true }
            ]
        ),
        "{events:?}"
    );
}

/// A stream deleted while bound is re-created by the topology; the consumer (created from
/// the hooks' config) is made again on it, and what is published afterwards is delivered.
#[tokio::test]
async fn a_deleted_stream_is_recreated_and_delivery_resumes() {
    let (server, client) = testing::nats_with(&topology::small()).await;
    let _server = server;
    let js = jetstream::new(client);
    let mut recorder = Recorder::default();
    let target = verdicts(&mut recorder);
    let mut consumer = Consumer::new(js.clone(), target, Settings::default(), recorder.clone());
    let subject = verdict_subject("acme", "lobby");
    publish(&js, subject.clone(), "before").await;
    assert_eq!(next_payload(&mut consumer, QUICK).await, "before");

    js.delete_stream(VERDICTS_STREAM).await.expect("delete");
    let next = tokio::spawn(async move {
        let payload = next_payload(&mut consumer, QUICK).await;
        (payload, consumer)
    });
    // Published once the stream is back (a publish before would find no stream).
    let deadline = Instant::now() + QUICK;
    while js.get_stream(VERDICTS_STREAM).await.is_err() {
        assert!(Instant::now() < deadline, "VERDICTS was not re-created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(&js, subject, "after").await;
    let (payload, consumer) = next.await.expect("join");
    assert_eq!(payload, "after");
    assert!(consumer.is_bound());
    assert!(recorder.events().contains(&Event::Bound { again: true }));
}

/// A consumer that cannot be bound (a squatter stream takes the request subjects, so the
/// topology cannot create `MODERATION`) gives up after `give_up_after`, with the reason.
#[tokio::test]
async fn gives_up_after_the_give_up_time() {
    let server = testing::nats();
    let js = jetstream::new(testing::connect(&server).await);
    js.create_stream(stream::Config {
        name: "SQUATTER".into(),
        subjects: vec!["offpath.req.*".into()],
        ..Default::default()
    })
    .await
    .expect("squatter");
    let recorder = Recorder::default();
    let settings = Settings {
        give_up_after: Some(Duration::from_secs(1)),
        ..Settings::default()
    };
    let mut consumer = Consumer::new(js, moderation(), settings, recorder.clone());
    let started = Instant::now();
    let result = tokio::time::timeout(QUICK, consumer.next()).await;
    let Ok(Err(GaveUp { waited, reason })) = result else {
        panic!("expected to give up, got {result:?}");
    };
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(reason, Unbound::Topology { .. }), "{reason}");
    assert!(recorder.events().iter().all(|e| *e == Event::Unbound));
    assert!(
        recorder.events().len() >= 2,
        "retried: {:?}",
        recorder.events()
    );
}

/// The stream of the cluster test: three replicas, and its one consumer.
const HEAL_STREAM: &str = "HEAL";
const HEAL_CONSUMER: &str = "worker";

/// Kills the node leading the consumer while a pull waits there (the client, connected to
/// another node, stays connected): the heartbeats stop, a new pull is started and the next
/// message comes once the cluster has a new leader. Without the replacement it would come
/// only when the dead request expired (60 s here, plus async-nats's 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_leader_died_is_replaced() {
    let mut cluster = NatsCluster::start().unwrap_or_else(|err| panic!("cluster: {err}"));
    let observer = async_nats::connect(cluster.node(0).url())
        .await
        .expect("connect");
    cluster
        .wait_for_meta_leader(&observer)
        .await
        .expect("meta leader");
    let admin = jetstream::new(observer);
    let leader = create_replicated(&admin, &cluster).await;
    let survivor = (leader + 1) % cluster.len();
    let client = async_nats::connect(cluster.node(survivor).url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    let target = Target {
        stream: HEAL_STREAM.into(),
        consumer: HEAL_CONSUMER.into(),
        topology: topology::small(),
    };
    let settings = Settings {
        expires: Duration::from_secs(60),
        heartbeat: Duration::from_secs(1),
        ..Settings::default()
    };
    let recorder = Recorder::default();
    let mut consumer = Consumer::new(js.clone(), target, settings, recorder.clone());
    publish_retrying(&js, "before").await;
    assert_eq!(next_payload(&mut consumer, QUICK).await, "before");

    cluster.kill(leader).expect("kill the consumer leader");
    let killed = Instant::now();
    let next = tokio::spawn(async move {
        // "before" again if its ack died with the leader: not what this test waits for.
        let mut payload = next_payload(&mut consumer, Duration::from_secs(40)).await;
        while payload == "before" {
            payload = next_payload(&mut consumer, Duration::from_secs(40)).await;
        }
        payload
    });
    publish_retrying(&js, "after").await;
    let payload = next.await.expect("join");
    assert_eq!(payload, "after");
    eprintln!("delivery resumed {:?} after the kill", killed.elapsed());
    let events = recorder.events();
    assert!(
        events.contains(&Event::PulledAgain(PullAgain::Silent)),
        "{events:?}"
    );
}

/// Creates [`HEAL_STREAM`] with three replicas and its consumer; returns the index of the
/// node leading the consumer.
async fn create_replicated(js: &jetstream::Context, cluster: &NatsCluster) -> usize {
    let stream = js
        .create_stream(stream::Config {
            name: HEAL_STREAM.into(),
            subjects: vec!["heal.>".into()],
            num_replicas: 3,
            max_bytes: topology::STREAM_BYTES,
            ..Default::default()
        })
        .await
        .expect("stream");
    stream
        .create_consumer(pull::Config {
            durable_name: Some(HEAL_CONSUMER.into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = stream.consumer_info(HEAL_CONSUMER).await;
        let leader = info.ok().and_then(|i| i.cluster).and_then(|c| c.leader);
        if let Some(i) = leader.as_deref().and_then(|l| cluster.index_of_name(l)) {
            return i;
        }
        assert!(Instant::now() < deadline, "the consumer has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes to [`HEAL_STREAM`], again until stored (the stream may be electing a leader).
async fn publish_retrying(js: &jetstream::Context, payload: &'static str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = match js.publish("heal.work", payload.into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if stored {
            return;
        }
        assert!(Instant::now() < deadline, "{payload} was never stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
