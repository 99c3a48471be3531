//! A chat stack for tests: a real nats-server, a moderator child process (the `offpath`
//! binary, real models), the transport in this process on port 0, and websocket clients.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use offpath_harness::NatsServer;
use offpath_protocol::topology::ensure;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_offpath");

/// The transport's settings for tests: generous rate limits unless a test says otherwise.
pub fn transport_config() -> offpath_transport::Config {
    offpath_transport::Config {
        tenant: "acme".into(),
        rate_per_second: 10_000.0,
        rate_burst: 10_000.0,
        flush_grace_ms: 2_000,
        topology: super::topology(),
        ..offpath_transport::Config::default()
    }
}

/// A moderator child process; killed on drop.
pub struct ModeratorProcess {
    child: Child,
    /// Its /metrics, /healthz, /readyz.
    pub ops: SocketAddr,
}

impl ModeratorProcess {
    /// Starts `offpath moderator` against `server` and waits until it is ready.
    pub async fn start(server: &NatsServer, extra: &[&str]) -> Self {
        let ops = free_addr();
        let child = Command::new(BIN)
            .args(["moderator", "--nats-url", &server.url()])
            .arg(format!("--metrics-addr={ops}"))
            .args(["--inference-threads=1", "--max-wait-ms=2"])
            .arg(format!("--stream-max-bytes={}", super::TEST_STREAM_BYTES))
            .args(extra)
            .env("OFFPATH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn offpath moderator");
        let mut moderator = Self { child, ops };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                moderator.child.try_wait().expect("wait").is_none(),
                "the moderator exited at start"
            );
            if let Ok((200, _)) = try_http_get(ops, "/readyz").await {
                return moderator;
            }
            assert!(Instant::now() < deadline, "moderator not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`STOP`, `CONT`, …).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for ModeratorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The transport running in this process.
pub struct Transport {
    /// `/ws`.
    pub public: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub ops: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), offpath_transport::TransportError>>,
}

impl Transport {
    /// Starts the transport against `server` with `config`.
    pub async fn start(server: &NatsServer, config: offpath_transport::Config) -> Self {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(server.url())
            .await
            .expect("connect");
        let public = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let operator = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (public_addr, ops) = (public.local_addr().unwrap(), operator.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(offpath_transport::run(
            config,
            client,
            offpath_transport::Listeners { public, operator },
            std::sync::Arc::new(offpath_transport::QueryUser),
            async {
                let _ = rx.await;
            },
        ));
        Self {
            public: public_addr,
            ops,
            shutdown: Some(tx),
            task,
        }
    }

    /// Shuts the transport down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("transport stops within 15 s")
            .expect("transport task")
            .expect("transport run");
    }

    /// `/metrics`.
    pub async fn metrics(&self) -> String {
        try_http_get(self.ops, "/metrics")
            .await
            .expect("GET /metrics")
            .1
    }

    /// A client connected as `user`.
    pub async fn client(&self, user: &str) -> ChatClient {
        ChatClient::connect(self.public, user).await
    }
}

/// A nats-server with the default topology.
pub async fn nats_with_topology() -> NatsServer {
    let server = super::nats();
    let client = super::connect(&server).await;
    ensure(&async_nats::jetstream::new(client), &super::topology())
        .await
        .expect("topology");
    server
}

/// A frame received by a client, with when it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// The JSON frame (or `{"type":"_close","code":…}` when the server closed).
    pub frame: Value,
    /// Arrival time.
    pub at: Instant,
}

/// A websocket chat client: frames are read on a background task as they come (so the
/// client is never slow) and kept in order.
pub struct ChatClient {
    sink: futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    frames: mpsc::UnboundedReceiver<Received>,
    /// Frames already taken out of the channel but not yet matched.
    pending: Vec<Received>,
}

impl ChatClient {
    /// Connects to `addr` as `user`.
    pub async fn connect(addr: SocketAddr, user: &str) -> Self {
        let url = format!("ws://{addr}/ws?user={user}");
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("websocket connect");
        let (sink, mut stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let frame = match message {
                    Message::Text(text) => serde_json::from_str(&text).expect("server JSON"),
                    Message::Close(close) => json!({
                        "type": "_close",
                        "code": close.as_ref().map(|c| u16::from(c.code)),
                        "reason": close.as_ref().map(|c| c.reason.to_string()),
                    }),
                    _ => continue,
                };
                if tx
                    .send(Received {
                        frame,
                        at: Instant::now(),
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        Self {
            sink,
            frames,
            pending: Vec::new(),
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    /// Sends any websocket message.
    pub async fn send_raw(&mut self, message: Message) {
        self.sink.send(message).await.expect("websocket send");
    }

    /// Joins `room` and waits until the gateway says it is a member.
    pub async fn join(&mut self, room: &str) {
        self.send(json!({"type": "join", "room": room})).await;
        self.expect(Duration::from_secs(30), |f| {
            f["type"] == "joined" && f["room"] == room
        })
        .await;
    }

    /// Sends `text` to `room`.
    pub async fn say(&mut self, room: &str, text: &str, client_msg_id: &str) {
        self.send(
            json!({"type": "send", "room": room, "text": text, "client_msg_id": client_msg_id}),
        )
        .await;
    }

    /// The first frame (in arrival order) matching `pred`, waiting up to `timeout`;
    /// frames that do not match are kept for later calls.
    pub async fn expect(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Received {
        if let Some(i) = self.pending.iter().position(|r| pred(&r.frame)) {
            return self.pending.remove(i);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(received)) if pred(&received.frame) => return received,
                Ok(Some(received)) => self.pending.push(received),
                Ok(None) | Err(_) => panic!(
                    "no matching frame within {timeout:?}; got {:?}",
                    self.pending.iter().map(|r| &r.frame).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Every frame received within `wait` (after the ones already pending).
    pub async fn drain(&mut self, wait: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(received)) = tokio::time::timeout_at(deadline, self.frames.recv()).await {
            self.pending.push(received);
        }
        std::mem::take(&mut self.pending)
    }
}

/// A frame of `kind` (and, when given, for message `id`).
pub fn is(kind: &'static str, id: Option<&str>) -> impl Fn(&Value) -> bool {
    let id = id.map(str::to_string);
    move |frame: &Value| frame["type"] == kind && id.as_deref().is_none_or(|id| frame["id"] == id)
}

/// A free local address.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// `GET path` over plain HTTP/1.0: (status, body).
pub async fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum of every sample of `name` whose labels contain `labels` (e.g. `action="block"`).
pub fn metric(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
