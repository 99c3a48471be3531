//! A real nats-server, the real models and a moderator running in this process.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use offpath_harness::NatsServer;
use offpath_moderator::{Config, Faults, ModeratorError};
use offpath_protocol::topology::{TopologyConfig, ensure};
use offpath_protocol::{DeadLetter, ModerationRequest, PROTOCOL_VERSION, Verdict, encode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Test topology: short ack wait and few deliveries, so retries happen within a test.
pub fn topology() -> TopologyConfig {
    TopologyConfig {
        ack_wait: Duration::from_secs(2),
        max_deliver: 3,
        // Small streams: JetStream refuses a stream whose max_bytes does not fit the
        // server's storage (a share of the free disk), and many test servers run at once.
        request_max_bytes: 64 * 1024 * 1024,
        verdict_max_bytes: 64 * 1024 * 1024,
        dlq_max_bytes: 64 * 1024 * 1024,
        ..TopologyConfig::default()
    }
}

pub fn config(faults: Faults) -> Config {
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
        nak_delay_ms: 100,
        batch_deadline_ms: 3_000,
        cancel_grace_ms: 500,
        faults,
        // What the moderator re-creates when part of the topology is deleted.
        topology: topology(),
        ..Config::default()
    }
}

/// A running moderator; `stop` shuts it down gracefully, `kill` aborts it.
pub struct Moderator {
    /// Where /metrics, /healthz and /readyz answer.
    pub http: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ModeratorError>>,
}

impl Moderator {
    pub async fn start(server: &NatsServer, config: Config) -> Self {
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

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
            .await
            .expect("moderator task")
            .expect("moderator run");
    }

    pub fn kill(self) {
        self.task.abort();
    }

    /// Whether `run` has returned (without being asked to stop, unless `stop` was called).
    pub fn has_returned(&self) -> bool {
        self.task.is_finished()
    }

    /// What `run` returned, if it returns within `timeout` without being asked to stop.
    pub async fn returned(mut self, timeout: Duration) -> Option<Result<(), ModeratorError>> {
        let result = tokio::time::timeout(timeout, &mut self.task).await.ok();
        if result.is_none() {
            self.task.abort();
        }
        result.map(|joined| joined.expect("moderator task"))
    }
}

pub struct Env {
    pub server: NatsServer,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
}

pub async fn env() -> Env {
    let server = NatsServer::start().expect("nats-server (run scripts/bootstrap)");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    ensure(&js, &topology()).await.expect("topology");
    Env { server, js, client }
}

pub fn request(id: &str, text: &str) -> ModerationRequest {
    ModerationRequest {
        v: PROTOCOL_VERSION,
        id: id.into(),
        tenant: "acme".into(),
        room: "lobby".into(),
        sender: "alice".into(),
        text: text.into(),
        sent_at_ms: offpath_protocol::now_ms(),
        deadline_ms: None,
        priority: None,
        policy: None,
    }
}

pub async fn publish(js: &jetstream::Context, request: &ModerationRequest) {
    publish_raw(js, "offpath.req.acme", encode(request), Some(&request.id)).await;
}

pub async fn publish_raw(
    js: &jetstream::Context,
    subject: &str,
    payload: Vec<u8>,
    id: Option<&str>,
) {
    let mut message = PublishMessage::build().payload(payload.into());
    if let Some(id) = id {
        message = message.message_id(id);
    }
    js.send_publish(subject.to_string(), message)
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// Collects verdicts (by id, de-duplicated) until `n` distinct ids or the timeout.
pub async fn verdicts(
    sub: &mut async_nats::Subscriber,
    n: usize,
    timeout: Duration,
) -> HashMap<String, Verdict> {
    let mut seen = HashMap::new();
    let _ = tokio::time::timeout(timeout, async {
        while seen.len() < n {
            let Some(message) = sub.next().await else {
                break;
            };
            let verdict: Verdict = serde_json::from_slice(&message.payload).expect("verdict JSON");
            seen.insert(verdict.id.clone(), verdict);
        }
    })
    .await;
    seen
}

/// Collects dead letters until `n` or the timeout.
pub async fn dead_letters(
    sub: &mut async_nats::Subscriber,
    n: usize,
    timeout: Duration,
) -> Vec<DeadLetter> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        while seen.len() < n {
            let Some(message) = sub.next().await else {
                break;
            };
            seen.push(serde_json::from_slice(&message.payload).expect("dead letter JSON"));
        }
    })
    .await;
    seen
}

/// Waits until the MODERATION stream holds no request.
pub async fn wait_empty(js: &jetstream::Context) -> u64 {
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

/// Polls `/readyz` until it answers 200, at most `timeout`; the last body otherwise.
pub async fn wait_ready(addr: std::net::SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, body) = http_get(addr, "/readyz").await;
        if status == 200 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `$SRV.STATS` figures of the moderator's micro service.
pub async fn service_stats(client: &async_nats::Client) -> serde_json::Value {
    for _ in 0..200 {
        if let Ok(answer) = client
            .request("$SRV.STATS.offpath-moderator", "".into())
            .await
        {
            let stats: serde_json::Value =
                serde_json::from_slice(&answer.payload).expect("stats JSON");
            return stats["endpoints"][0]["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the micro service never answered $SRV.STATS");
}

/// `GET path` over plain HTTP/1.0: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// The value of the first sample of `name` in a Prometheus text rendering; panics if absent.
pub fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Runs `promtool check metrics` on a `/metrics` rendering; panics with its complaints, or
/// with how to install it when it is missing (Debian's `prometheus` package).
pub fn promtool_check(metrics: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run promtool ({err}): install Debian's `prometheus` package \
                 (apt-get install -y prometheus, or scripts/bootstrap --promtool)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused /metrics:\n{}{}\n--- /metrics ---\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The series of `/metrics` (a sample line without its value) that start with `prefix`.
pub fn series<'a>(metrics: &'a str, prefix: &str) -> Vec<&'a str> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series))
        .collect()
}
