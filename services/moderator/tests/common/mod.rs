//! A real nats-server, the real models and a moderator running in this process.

#![allow(dead_code)] // each test binary uses a different subset

use offpath_moderator::{InferenceConfig, IntakeConfig};
use offpath_ops::cli::Millis;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::Subscriber;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage};
use offpath_harness::{NatsServer, http, testing, verdicts};
use offpath_moderator::{Config, Faults, ModeratorError};
use offpath_protocol::topology::TopologyConfig;
use offpath_protocol::{ModerationRequest, encode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Test topology: short ack wait and few deliveries, so retries happen within a test.
pub(crate) fn topology() -> TopologyConfig {
    TopologyConfig {
        ack_wait: Duration::from_secs(2),
        max_deliver: 3,
        ..offpath_harness::topology::small()
    }
}

/// The operator's policy signing key of these tests (one per test binary).
pub(crate) fn signing_key() -> &'static offpath_protocol::policy_signature::SigningKey {
    static KEY: std::sync::OnceLock<offpath_protocol::policy_signature::SigningKey> =
        std::sync::OnceLock::new();
    KEY.get_or_init(offpath_protocol::policy_signature::SigningKey::generate)
}

/// `text` as `offpath policy push` puts it in the bucket: signed by [`signing_key`], each
/// value later than the one before.
pub(crate) fn signed(text: &str) -> String {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    let next = |last: u64| Some(now.max(last + 1));
    let last = LAST
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            next,
        )
        .expect("always Some");
    signing_key().sign(text, now.max(last + 1))
}

pub(crate) fn config(faults: Faults) -> Config {
    let ort = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/lib/libonnxruntime.so"));
    let models = vec![
        root().join("models/minilm-insult"),
        root().join("models/profanity"),
    ];
    Config {
        models,
        ort_library: Some(ort),
        policy_signers: vec![signing_key().public_key()],
        faults,
        // What the moderator re-creates when part of the topology is deleted.
        topology: topology(),
        intake: IntakeConfig {
            nak_delay: Millis::new(100),
            ..Config::default().intake
        },
        inference: InferenceConfig {
            batch_deadline: Millis::new(3_000),
            cancel_grace: Millis::new(500),
            ..Config::default().inference
        },
        ..Config::default()
    }
}

/// Faults that delay every batch by `ms` milliseconds.
pub(crate) fn slow_batches(ms: u64) -> Faults {
    Faults {
        batch_delay_ms: ms,
        ..Faults::default()
    }
}

/// Faults that hang every batch of the first inference thread.
pub(crate) fn hung_first_thread() -> Faults {
    Faults {
        hang_thread: Some(0),
        ..Faults::default()
    }
}

/// Asserts that counter `name` is described on `/metrics` and has counted at least `min`.
pub(crate) fn assert_counted(metrics: &str, name: &str, min: f64) {
    assert!(
        metrics.contains(&format!("# HELP {name}")),
        "{name} described"
    );
    let value = offpath_harness::scrape::value(metrics, name);
    assert!(value >= min, "{name} = {value}");
}

/// A running moderator; `stop` shuts it down gracefully, `kill` aborts it.
pub(crate) struct Moderator {
    /// Where /metrics, /healthz and /readyz answer.
    pub http: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ModeratorError>>,
}

impl Moderator {
    pub(crate) async fn start(server: &NatsServer, config: Config) -> Self {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let (tx, rx) = oneshot::channel::<()>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http = listener.local_addr().expect("addr");
        let task = tokio::spawn(offpath_moderator::run(config, client, listener, async {
            let _ = rx.await;
        }));
        Self {
            http,
            shutdown: Some(tx),
            task,
        }
    }

    /// `GET path` on its operator port: (status, body).
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        http::get(self.http, path)
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}"))
    }

    /// Waits up to `secs` seconds until `/readyz` answers 200; panics with the last answer,
    /// saying `when` it should have been ready.
    pub(crate) async fn assert_ready(&self, secs: u64, when: &str) {
        if let Err((status, body)) = http::wait_ready(self.http, Duration::from_secs(secs)).await {
            panic!("not ready {when}: {status} {body}");
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
            .await
            .expect("moderator task")
            .expect("moderator run");
    }

    /// Asserts that the request stream ends empty (every request acked), then stops.
    pub(crate) async fn stop_drained(self, js: &jetstream::Context) {
        assert_eq!(wait_empty(js).await, 0, "request stream ends empty");
        self.stop().await;
    }

    pub(crate) fn kill(self) {
        self.task.abort();
    }

    /// Whether `run` has returned (without being asked to stop, unless `stop` was called).
    pub(crate) fn has_returned(&self) -> bool {
        self.task.is_finished()
    }

    /// What `run` returned, if it returns within `timeout` without being asked to stop.
    pub(crate) async fn returned(
        mut self,
        timeout: Duration,
    ) -> Option<Result<(), ModeratorError>> {
        let result = tokio::time::timeout(timeout, &mut self.task).await.ok();
        if result.is_none() {
            self.task.abort();
        }
        result.map(|joined| joined.expect("moderator task"))
    }
}

pub(crate) struct Env {
    pub server: NatsServer,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
}

pub(crate) async fn env() -> Env {
    let (server, client) = testing::nats_with(&topology()).await;
    let js = jetstream::new(client.clone());
    Env { server, js, client }
}

/// A nats-server with the test topology, a subscription to acme's verdicts, and a
/// moderator started with `config` after the subscription.
pub(crate) async fn start(config: Config) -> (Env, Subscriber, Moderator) {
    let env = env().await;
    let verdicts = verdicts::subscribe(&env.client, "acme").await;
    let moderator = Moderator::start(&env.server, config).await;
    (env, verdicts, moderator)
}

pub(crate) fn request(id: &str, text: &str) -> ModerationRequest {
    verdicts::request(id, text, offpath_protocol::now_ms())
}

pub(crate) async fn publish(js: &jetstream::Context, request: &ModerationRequest) {
    publish_raw(js, "offpath.req.acme", encode(request), Some(&request.id)).await;
}

pub(crate) async fn publish_raw(
    js: &jetstream::Context,
    subject: &str,
    payload: Vec<u8>,
    id: Option<&str>,
) {
    // An acknowledgement that does not come in time is published again, as a transport's
    // outbox does (the same `Nats-Msg-Id`, so JetStream stores it once): on a busy machine a
    // stream the moderator has just re-created can be slow to answer its first publish.
    for attempt in 1..=3 {
        let mut message = PublishMessage::build().payload(payload.clone().into());
        if let Some(id) = id {
            message = message.message_id(id);
        }
        let ack = js
            .send_publish(subject.to_string(), message)
            .await
            .expect("publish");
        match ack.await {
            Ok(_) => return,
            Err(err) if attempt < 3 && err.kind() == PublishErrorKind::TimedOut => continue,
            Err(err) => panic!("stored: {err:?}"),
        }
    }
}

/// Waits until the MODERATION stream holds no request.
pub(crate) async fn wait_empty(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream("MODERATION").await.expect("stream");
    for _ in 0..100 {
        let left = stream.info().await.expect("info").state.messages;
        if left == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stream.info().await.expect("info").state.messages
}

/// Every verdict message for `n` ids, counting repeats: id → verdicts received. Anything
/// repeated arrives soon after the last: it waits a little for it.
pub(crate) async fn receive(
    sub: &mut Subscriber,
    n: usize,
) -> std::collections::HashMap<String, Vec<offpath_protocol::Verdict>> {
    use futures::StreamExt;
    use offpath_protocol::Verdict;
    let mut seen: std::collections::HashMap<String, Vec<Verdict>> = Default::default();
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        while seen.len() < n {
            let Some(message) = sub.next().await else {
                break;
            };
            let verdict: Verdict = serde_json::from_slice(&message.payload).expect("verdict");
            seen.entry(verdict.id.clone()).or_default().push(verdict);
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(message) = sub.next().await {
            let verdict: Verdict = serde_json::from_slice(&message.payload).expect("verdict");
            seen.entry(verdict.id.clone()).or_default().push(verdict);
        }
    })
    .await;
    seen
}

/// Asserts that `seen` ([`receive`]) holds exactly one verdict for each of `n` ids.
pub(crate) fn assert_answered_once(
    seen: &std::collections::HashMap<String, Vec<offpath_protocol::Verdict>>,
    n: usize,
) {
    assert_eq!(seen.len(), n, "a verdict for every request");
    let repeated: Vec<&String> = seen
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(repeated.is_empty(), "verdicts repeated for {repeated:?}");
}

/// Publishes `n` distinct insults `<prefix>-<i>` and returns their verdicts.
pub(crate) async fn judge(
    env: &Env,
    sub: &mut Subscriber,
    prefix: &str,
    n: usize,
) -> Vec<offpath_protocol::Verdict> {
    for i in 0..n {
        let text = format!("you are a pathetic idiot #{prefix}{i}");
        publish(&env.js, &request(&format!("{prefix}-{i}"), &text)).await;
    }
    let seen = verdicts::collect(sub, n, Duration::from_secs(60)).await;
    assert_eq!(seen.len(), n, "{prefix}: a verdict for every request");
    seen.into_values().collect()
}

/// A moderator with the policy file `text` (written in `dir`), one shared inference thread
/// and none reserved.
pub(crate) fn with_policies(dir: &std::path::Path, text: &str) -> Config {
    let file = dir.join("policies.toml");
    std::fs::write(&file, text).expect("write policy file");
    Config {
        policies: Some(file),
        inference: InferenceConfig {
            inference_threads: 1,
            interactive_threads: 0,
            ..config(Faults::default()).inference
        },
        ..config(Faults::default())
    }
}
