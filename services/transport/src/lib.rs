//! The offpath transport: a websocket chat gateway that never waits on moderation.
//!
//! Flow of a message: a client's `send` frame is read by its connection
//! ([`connection`]) → [`hub::Hub::accept`] assigns the id, acks, fans the message out to
//! every member's bounded send queue ([`peer::Peer::push`], a `try_send`: a client that
//! cannot keep up is disconnected, not waited for) and `try_send`s a `ModerationRequest`
//! into the bounded outbox → [`outbox::drain`], a separate task, publishes it to the
//! `MODERATION` stream. Verdicts come back through a durable consumer on `VERDICTS`
//! ([`verdicts::consume`]) and are applied by the hub: `block` retracts the message from
//! the room, `flag` and `allow` tell the sender. Rooms with the `hold` policy deliver a
//! message only once it is allowed or its hold deadline passes (then the room's
//! fail-open/fail-closed policy decides).
//!
//! Nothing on a socket's path awaits NATS or a model; the only tasks that wait on NATS are
//! the outbox drain and the verdict consumer. The transport depends on `offpath-protocol`
//! (the contract), `offpath-ops` (the operator endpoints) and `offpath-jetstream` (its
//! verdict consumer) only.

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod auth;
mod background;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
mod caps;
mod config;
mod connection;
#[doc(hidden)]
pub mod frames;
mod http;
mod hub;
mod metrics;
mod outbox;
mod peer;
mod public;
mod verdicts;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use auth::{
    AuthError, Authenticator, Identity, IdentityError, KeyError, QueryUser, RoomGrant, SECRET_ENV,
    Tokens, authenticator, check_listener, wants_tokens,
};
pub use config::{
    Config, Failure, IdentityConfig, LimitsConfig, MessagesConfig, Moderation, ModerationConfig,
    ModerationRule, OutboxConfig, RoomPolicy, RoomRule,
};
pub use connection::send_cost;

/// How long shutdown waits for connections to take their going-away frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Why the transport could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The settings are unusable.
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// A listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// The listeners the transport serves on.
pub struct Listeners {
    /// Chat clients: `/ws` and `/`.
    pub public: TcpListener,
    /// Operators: `/metrics`, `/healthz`, `/readyz`.
    pub operator: TcpListener,
}

/// Runs the gateway until `shutdown` completes: then refuses new connections, closes every
/// socket with a going-away frame, flushes the outbox to NATS (up to `outbox.flush_grace`; the
/// rest is counted as shed) and returns. NATS need not be reachable at start: requests
/// wait in the outbox and the verdict consumer binds when it can.
pub async fn run(
    config: Config,
    client: async_nats::Client,
    listeners: Listeners,
    auth: Arc<dyn Authenticator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TransportError> {
    config.validate().map_err(TransportError::Config)?;
    let public_addr = listeners.public.local_addr()?;
    auth::check_listener(&config, auth.kind(), public_addr)
        .map_err(|err| TransportError::Config(vec![err.to_string()]))?;
    metrics::PROMETHEUS.handle();
    // Bounded: the requests the gateway holds while NATS is slow or down (see the flag).
    let (outbox_tx, outbox_rx) = mpsc::channel(config.outbox.outbox_capacity);
    let admission = hub::Admission::new(config.moderation.mode, &client);
    let caps = caps::Caps::new(
        config.limits.max_connections_per_ip,
        config.limits.max_connections_per_user,
    );
    let hub = hub::Hub::new(config, outbox_tx, admission);
    let background = background::Background::start(&hub, &client, outbox_rx);
    let app = http::App {
        hub: Arc::clone(&hub),
        auth,
        stopping: Arc::new(AtomicBool::new(false)),
        client,
        verdicts: Arc::clone(&background.binding),
        caps,
    };
    let ready = app.clone();
    let operator =
        offpath_ops::Endpoints::spawn(listeners.operator, &metrics::PROMETHEUS, move || {
            http::readiness(&ready)
        });
    info!(
        addr = %public_addr,
        instance = %hub.config().instance,
        "transport ready: websocket at /ws"
    );
    public::serve(listeners.public, app, shutdown).await?;
    wait_closed(&hub).await;
    background.stop().await;
    let _ = operator.stop().await;
    info!("transport stopped");
    Ok(())
}

/// Waits (up to [`CLOSE_WAIT`]) for every connection to take its going-away frame.
async fn wait_closed(hub: &hub::Hub) {
    let closed = tokio::time::timeout(CLOSE_WAIT, async {
        while hub.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    if closed.await.is_err() {
        warn!(
            open = hub.connections(),
            "connections still open after the close wait"
        );
    }
}
