//! A chat stack for tests: a real nats-server, a moderator child process (the `offpath`
//! binary, real models), the transport in this process on port 0, and websocket clients.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use offpath_harness::{NatsServer, Proc, http, process, testing, topology};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::BIN;
use offpath_ops::cli::Millis;

/// The transport's settings for tests: generous rate limits unless a test says otherwise.
pub(crate) fn transport_config() -> offpath_transport::Config {
    let defaults = offpath_transport::Config::default();
    offpath_transport::Config {
        tenant: "acme".into(),
        limits: offpath_transport::LimitsConfig {
            rate_per_second: 10_000.0,
            rate_burst: 10_000.0,
            // Every send costs one, whatever its length: the tests that flood long texts
            // are about other limits (the cost rule has its own tests).
            send_cost_bytes: 0,
            ..defaults.limits
        },
        outbox: offpath_transport::OutboxConfig {
            flush_grace: Millis::new(2_000),
            ..defaults.outbox
        },
        topology: topology::small(),
        ..defaults
    }
}

/// Starts `offpath moderator` against `server` as a child process (killed on drop) and
/// waits until it is ready.
pub(crate) async fn moderator(server: &NatsServer, extra: &[&str]) -> Proc {
    moderator_with_env(server, extra, &[]).await
}

/// [`moderator`] with `env` set (a NATS login, trusted policy signers).
pub(crate) async fn moderator_with_env(
    server: &NatsServer,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let args = [&QUICK[..], extra].concat();
    let mut moderator = spawn_moderator(&server.url(), &args, env);
    moderator
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("the moderator is ready");
    moderator
}

/// The moderator settings of most tests: one inference thread, a batch closed after 2 ms.
pub(crate) const QUICK: [&str; 2] = ["--inference-threads=1", "--max-wait-ms=2"];

/// `offpath moderator` against `nats_url` (every node's, comma-separated, for a cluster) as
/// a child process (killed on drop), not waited for: its metrics on a free port, small
/// streams, warnings only in its log, then `args` and `env`. Every test's moderator
/// process starts here.
pub(crate) fn spawn_moderator(nats_url: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let ops = process::concrete_addr(([127, 0, 0, 1], 0).into()).expect("a free port");
    let mut command = Command::new(BIN);
    command
        .args(["moderator", "--nats-url", nats_url])
        .arg(format!("--metrics-addr={ops}"))
        .arg(format!("--stream-max-bytes={}", topology::STREAM_BYTES))
        .args(args)
        .envs(env.iter().copied())
        .env("OFFPATH_LOG", "warn");
    Proc::start("moderator", command, ops).expect("spawn offpath moderator")
}

/// The token of reviewer `sam`, who serves tenant `globex` only.
pub(crate) const GLOBEX_REVIEWER_TOKEN: &str = "sam-globex-only-token";

/// `offpath review` against `server` as a child process (its own metrics recorder, as
/// deployed; killed on drop), on a free port, with reviewer `rita` (every tenant) whose
/// token is `token` and `sam` ([`GLOBEX_REVIEWER_TOKEN`], tenant `globex` only) (the
/// reviewers file goes in `dir`); ready.
pub(crate) async fn review_console(
    server: &NatsServer,
    dir: &std::path::Path,
    token: &str,
) -> (Proc, SocketAddr) {
    review_console_with(server, dir, token, &[]).await
}

/// [`review_console`] with `extra` arguments (its limits).
pub(crate) async fn review_console_with(
    server: &NatsServer,
    dir: &std::path::Path,
    token: &str,
    extra: &[&str],
) -> (Proc, SocketAddr) {
    review_console_as(server, dir, token, extra, &[]).await
}

/// [`review_console_with`] with `env` set (a NATS login).
pub(crate) async fn review_console_as(
    server: &NatsServer,
    dir: &std::path::Path,
    token: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, SocketAddr) {
    let reviewers = dir.join("reviewers.toml");
    let digest = offpath_protocol::text_sha256(token);
    let sam = offpath_protocol::text_sha256(GLOBEX_REVIEWER_TOKEN);
    let file = format!(
        "[reviewers]\nrita = \"{digest}\"\nsam = {{ token_sha256 = \"{sam}\", tenants = [\"globex\"] }}\n"
    );
    std::fs::write(&reviewers, file).expect("write");
    let addr = process::concrete_addr(([127, 0, 0, 1], 0).into()).expect("a free port");
    let mut command = Command::new(BIN);
    command
        .args(["review", "--nats-url", &server.url()])
        .arg(format!("--listen-addr={addr}"))
        .arg(format!("--reviewers={}", reviewers.display()))
        .args(extra)
        .envs(env.iter().copied())
        .env("OFFPATH_LOG", "warn");
    let mut console = Proc::start("review", command, addr).expect("spawn offpath review");
    console
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("the console is ready");
    (console, addr)
}

/// The transport running in this process.
pub(crate) struct Transport {
    /// `/ws`.
    pub public: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub ops: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), offpath_transport::TransportError>>,
}

impl Transport {
    /// Starts the transport against `server` with `config` (development identity).
    pub(crate) async fn start(server: &NatsServer, config: offpath_transport::Config) -> Self {
        Self::start_with(
            server,
            config,
            std::sync::Arc::new(offpath_transport::QueryUser),
        )
        .await
    }

    /// Starts the transport against `server` with `config` and the authenticator `auth`.
    pub(crate) async fn start_with(
        server: &NatsServer,
        config: offpath_transport::Config,
        auth: std::sync::Arc<dyn offpath_transport::Authenticator>,
    ) -> Self {
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
            auth,
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
    pub(crate) async fn stop(mut self) {
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
    pub(crate) async fn metrics(&self) -> String {
        http::get(self.ops, "/metrics")
            .await
            .expect("GET /metrics")
            .1
    }

    /// Alice and Bob, connected in that order, then both members of `room`.
    pub(crate) async fn alice_and_bob(&self, room: &str) -> (ChatClient, ChatClient) {
        let mut alice = self.client("alice").await;
        let mut bob = self.client("bob").await;
        alice.join(room).await;
        bob.join(room).await;
        (alice, bob)
    }

    /// A client connected as `user`, member of `room`.
    pub(crate) async fn joined(&self, user: &str, room: &str) -> ChatClient {
        let mut client = self.client(user).await;
        client.join(room).await;
        client
    }

    /// A client connected as `user`.
    pub(crate) async fn client(&self, user: &str) -> ChatClient {
        ChatClient::connect(self.public, user).await
    }
}

/// A nats-server with the default topology (small streams).
pub(crate) async fn nats_with_topology() -> NatsServer {
    testing::nats_with(&topology::small()).await.0
}

/// A nats-server with the default topology and the transport with `config`, no moderator.
pub(crate) async fn gateway(config: offpath_transport::Config) -> (NatsServer, Transport) {
    let server = nats_with_topology().await;
    let transport = Transport::start(&server, config).await;
    (server, transport)
}

/// A nats-server with the default topology, a moderator process and the transport with
/// `config`: the whole chat path.
pub(crate) async fn moderated(config: offpath_transport::Config) -> (NatsServer, Proc, Transport) {
    let server = nats_with_topology().await;
    let moderator = moderator(&server, &[]).await;
    let transport = Transport::start(&server, config).await;
    (server, moderator, transport)
}

/// A frame received by a client, with when it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The JSON frame (or `{"type":"_close","code":…}` when the server closed).
    pub frame: Value,
    /// Arrival time.
    pub at: Instant,
}

/// A websocket chat client: frames are read on a background task as they come (so the
/// client is never slow) and kept in order.
pub(crate) struct ChatClient {
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
    pub(crate) async fn connect(addr: SocketAddr, user: &str) -> Self {
        let url = format!("ws://{addr}/ws?user={user}");
        Self::connect_with(url).await.expect("websocket connect")
    }

    /// Connects with `request` (a URL, or a request with headers such as `Origin` or
    /// `Authorization`); the handshake error when the gateway refuses.
    pub(crate) async fn connect_with(
        request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
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
        Ok(Self {
            sink,
            frames,
            pending: Vec::new(),
        })
    }

    /// Sends a JSON frame.
    pub(crate) async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    /// Sends any websocket message.
    pub(crate) async fn send_raw(&mut self, message: Message) {
        if let Err(err) = self.sink.send(message).await {
            // Say why the gateway closed, when it did.
            let mut closed = None;
            while let Ok(r) = self.frames.try_recv() {
                if r.frame["type"] == "_close" {
                    closed = Some(r.frame);
                }
            }
            panic!("websocket send: {err}; the gateway's close frame: {closed:?}");
        }
    }

    /// Joins `room` and waits until the gateway says it is a member.
    pub(crate) async fn join(&mut self, room: &str) {
        self.send(json!({"type": "join", "room": room})).await;
        self.expect(Duration::from_secs(30), |f| {
            f["type"] == "joined" && f["room"] == room
        })
        .await;
    }

    /// Sends `text` to `room`.
    pub(crate) async fn say(&mut self, room: &str, text: &str, client_msg_id: &str) {
        self.send(
            json!({"type": "send", "room": room, "text": text, "client_msg_id": client_msg_id}),
        )
        .await;
    }

    /// Sends `text` to `room` as `tag` (its `client_msg_id`); returns the id the gateway
    /// assigned, from the ack.
    pub(crate) async fn post(&mut self, room: &str, text: &str, tag: &str) -> String {
        self.say(room, text, tag).await;
        let ack = self
            .expect(Duration::from_secs(60), |f| {
                f["type"] == "ack" && f["client_msg_id"] == tag
            })
            .await;
        ack.frame["id"].as_str().expect("id").to_string()
    }

    /// The first frame (in arrival order) matching `pred`, waiting up to `timeout`;
    /// frames that do not match are kept for later calls.
    pub(crate) async fn expect(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Received {
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
    pub(crate) async fn drain(&mut self, wait: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(received)) = tokio::time::timeout_at(deadline, self.frames.recv()).await {
            self.pending.push(received);
        }
        std::mem::take(&mut self.pending)
    }
}

/// A frame of `kind` (and, when given, for message `id`).
pub(crate) fn is(kind: &'static str, id: Option<&str>) -> impl Fn(&Value) -> bool {
    let id = id.map(str::to_string);
    move |frame: &Value| frame["type"] == kind && id.as_deref().is_none_or(|id| frame["id"] == id)
}
