//! HTTP: the public side (`/ws`, `/ws/check` which a page asks first, and `/`: a small chat
//! page) and what `/readyz` says on the operator's port (the endpoints themselves are
//! `offpath-ops`'s).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use offpath_ops::Readiness;

use crate::auth::{self, Authenticator, Identity, origin};
use crate::caps::{self, Caps, Slot};
use crate::connection;
use crate::frames::Close;
use crate::frames::{ErrorCode, FrameError, ServerFrame};
use crate::hub::Hub;
use crate::metrics as m;
use crate::peer::{Peer, PeerReceiver};

/// Websocket read buffer per connection.
const READ_BUFFER_BYTES: usize = 4096;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct App {
    /// Rooms, connections, messages.
    pub(crate) hub: Arc<Hub>,
    /// Who is connecting.
    pub(crate) auth: Arc<dyn Authenticator>,
    /// Set when shutdown begins: new connections are refused.
    pub(crate) stopping: Arc<AtomicBool>,
    /// The NATS connection (for `/readyz`).
    pub(crate) client: async_nats::Client,
    /// Whether the verdict consumer is bound (for `/readyz`).
    pub(crate) verdicts: Arc<crate::verdicts::Binding>,
    /// Open websockets per client address and per user.
    pub(crate) caps: Arc<Caps>,
}

/// The public router: `/ws`, and `/` (the chat page, its script and its style: files of
/// its own, so its Content-Security-Policy allows no inline code), every response with the
/// security headers.
pub(crate) fn public(app: App) -> Router {
    auth::announce(app.auth.as_ref());
    let router = Router::new()
        .route("/ws", get(upgrade))
        .route(CHECK_PATH, post(check))
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route(
            "/chat.js",
            get(|| async { asset(JS, include_str!("chat.js")) }),
        )
        .route(
            "/connect.js",
            get(|| async { asset(JS, include_str!("connect.js")) }),
        )
        .route(
            "/chat.css",
            get(|| async { asset(CSS, include_str!("chat.css")) }),
        )
        .with_state(app);
    offpath_ops::with_security_headers(router, offpath_ops::SAME_ORIGIN_CSP)
}

/// Where a page asks whether the socket would take its credentials (see [`check`]).
const CHECK_PATH: &str = "/ws/check";
/// Content type of [`check`]'s answers.
const JSON: &str = "application/json";

/// The question a page asks before opening a socket: would `/ws` take these credentials
/// (the same `Authorization: Bearer`, `?access_token=` or `?user=`), and if not, why? A
/// browser cannot read the 401 of a refused websocket upgrade (it sees close code 1006),
/// so the page calls this first and shows a sentence per reason. The answer is
/// `{"ok":true}` (200), or `{"ok":false,"reason":…}` with the status the upgrade would get
/// (401 with the reason of `offpath_transport_auth_refusals_total`, 403 `origin`): never
/// the token, the user name nor the parser's words, nothing the upgrade's 401 body does
/// not already say. It is [`admit`] itself, so the same Origin and `Host` rules apply (a
/// `POST`, so browsers always send `Origin`, same-origin pages included) and a refusal is
/// counted as a refused upgrade. The body is never read; the accept loop's socket caps
/// and header limits and timeouts are the socket's.
async fn check(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    let (status, body) = match admit(&app, &uri, &headers) {
        Ok(_) => (StatusCode::OK, r#"{"ok":true}"#.to_string()),
        Err(refusal) => (
            refusal.status,
            format!(r#"{{"ok":false,"reason":"{}"}}"#, refusal.reason),
        ),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, JSON),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Why [`admit`] refused a request: the HTTP status, the stable reason (`origin`, or an
/// [`auth::AuthError::reason`]) and the body the upgrade answers with.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    body: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, self.body).into_response()
    }
}

/// Content type of the page's script (with `nosniff` a browser runs nothing else).
const JS: &str = "text/javascript; charset=utf-8";
/// Content type of the page's style sheet.
const CSS: &str = "text/css; charset=utf-8";

/// A file of the page, as `content_type`.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn upgrade(
    State(app): State<App>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let header = app.hub.config().limits.client_ip_header.as_deref();
    let ip = caps::client_ip(&headers, header, remote.ip());
    let identity = match admit(&app, &uri, &headers) {
        Ok(identity) => identity,
        Err(refusal) => return refusal.into_response(),
    };
    let max = app.hub.config().limits.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        // tungstenite zero-fills its whole read buffer on every read attempt: at the
        // 128 KiB default that was a quarter of the gateway's CPU (perf, 500 clients).
        // Chat frames are small; a larger frame is read in several chunks.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| connected(app, identity, ip, socket))
}

/// The page's origin, then the credentials: an identity, or the HTTP refusal (403 for a
/// foreign page, 401 for credentials), counted.
fn admit(app: &App, uri: &Uri, headers: &HeaderMap) -> Result<Identity, Refusal> {
    let config = app.hub.config();
    if let Err(err) = origin::check(
        headers,
        &config.identity.allowed_origins,
        &config.identity.public_hosts,
    ) {
        metrics::counter!(m::DISCONNECTS, "reason" => "origin").increment(1);
        tracing::debug!("refused: {err}");
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: "origin",
            body: format!("{err}\n"),
        });
    }
    app.auth.authenticate(uri, headers).map_err(|err| {
        metrics::counter!(m::DISCONNECTS, "reason" => "unauthenticated").increment(1);
        metrics::counter!(m::AUTH_REFUSALS, "reason" => err.reason()).increment(1);
        // The body names the refusal's kind only: the token parser's own words (which
        // claim, which decoding step failed) help a forger, not the user.
        tracing::debug!("unauthenticated: {err}");
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: err.reason(),
            body: format!("unauthenticated: {}\n", err.reason()),
        }
    })
}

async fn connected(app: App, identity: Identity, ip: IpAddr, mut socket: WebSocket) {
    let (peer, rx, _slot) = match register(&app, Arc::clone(&identity.user), ip) {
        Ok(registered) => registered,
        Err((code, close, message)) => {
            let frame = ServerFrame::error(&FrameError::new(code, message)).encode();
            let refuse = async {
                let _ = socket.send(Message::Text(frame)).await;
                let close = CloseFrame {
                    code: close.code,
                    reason: close.reason.into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
            return;
        }
    };
    peer.vouch_account_created(identity.account_created_ms);
    let _expiry = auth::close_at_expiry(&peer, identity.expires_at);
    let (sink, stream) = socket.split();
    connection::serve(app.hub, peer, rx, sink, stream, identity.rooms).await;
}

/// Why a websocket is refused: its error code, close code and message.
type Turned = (ErrorCode, Close, &'static str);

/// Registers a new websocket within the caps (per address, per user, then the gateway's),
/// or says why not. The [`Slot`] is held for the connection's life.
fn register(
    app: &App,
    user: Arc<str>,
    ip: IpAddr,
) -> Result<(Arc<Peer>, PeerReceiver, Slot), Turned> {
    if app.stopping.load(Ordering::Relaxed) {
        return Err((
            ErrorCode::ShuttingDown,
            Close::SHUTDOWN,
            "the gateway is shutting down",
        ));
    }
    let slot = app.caps.admit(ip, &user).map_err(|close| {
        let message = if close == Close::PER_IP {
            "this address holds as many connections as it may; close one first"
        } else {
            "this user holds as many connections as it may; close one first"
        };
        (ErrorCode::TooManyConnections, close, message)
    })?;
    let (peer, rx) = app.hub.register(user).ok_or((
        ErrorCode::TooManyConnections,
        Close::FULL,
        "the gateway is at its connection limit; try again later",
    ))?;
    Ok((peer, rx, slot))
}

/// What `/readyz` answers: ready unless shutting down or the verdict consumer is unbound
/// while NATS is up; the figures in either case.
pub(crate) fn readiness(app: &App) -> Readiness {
    let nats = app.client.connection_state() == async_nats::connection::State::Connected;
    let bound = app.verdicts.is_bound();
    let detail = format!(
        "connections {}; outbox depth {}; held {}; NATS {}; verdict consumer {}",
        app.hub.connections(),
        app.hub.outbox_depth(),
        app.hub.held(),
        if nats {
            "connected"
        } else {
            "disconnected (requests wait in the outbox)"
        },
        if bound { "bound" } else { "not bound" },
    );
    // NATS being down does not make the gateway unready: chat keeps working without it
    // (that is the point); the outbox and the failure policies cover the gap. NATS up but
    // the verdict consumer unbound is a fault no failure policy covers: no message would
    // ever be retracted or released from a hold.
    let unbound = if nats {
        app.verdicts.readiness().err()
    } else {
        None
    };
    let unready = if app.stopping.load(Ordering::Relaxed) {
        vec!["shutting down".to_string()]
    } else {
        unbound.into_iter().collect()
    };
    Readiness {
        unready,
        detail: Some(detail),
    }
}
