//! The public port: [`offpath_ops::public`]'s accept loop (shared with the review console)
//! with the transport's limits. Every accepted socket is counted from accept to close (past
//! `--max-sockets`, or past its address's share, a new one is closed at once), its request
//! headers must arrive within `--header-timeout-ms` and its websocket upgrade within
//! `--handshake-timeout-ms`.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;

use offpath_ops::public::{PublicPort, SocketLimits, SocketMetrics};
use tokio::net::TcpListener;
use tracing::info;

use crate::http;
use crate::metrics as m;

/// What the public port counts, under the transport's names.
const METRICS: SocketMetrics = SocketMetrics {
    open: m::SOCKETS,
    closed: m::SOCKETS_CLOSED,
    accept_errors: m::ACCEPT_ERRORS,
    timeout_reason: "handshake_timeout",
};

/// Serves chat clients until `shutdown` completes; then refuses new connections, closes
/// every socket with a going-away frame and lets plain HTTP exchanges finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: http::App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = app.hub.config();
    let limits = SocketLimits {
        header_timeout: config.limits.header_timeout.get(),
        connection_timeout: config.limits.handshake_timeout.get(),
        max_sockets: config.limits.max_sockets,
        // Twice `--max-connections-per-ip`: its websockets and as many handshakes. Behind a
        // proxy every socket comes from the proxy: only the global cap applies then.
        max_sockets_per_address: config
            .limits
            .client_ip_header
            .is_none()
            .then(|| config.limits.max_connections_per_ip.saturating_mul(2)),
        // hyper's default (about 400 KiB), as before the accept loop was shared.
        max_header_bytes: None,
        keep_alive: true,
    };
    let router = http::public(app.clone());
    let stopping = move || {
        info!("shutting down: closing sockets, then flushing the outbox");
        app.stopping.store(true, Ordering::Relaxed);
        app.hub.close_all();
    };
    let port = PublicPort {
        limits,
        metrics: METRICS,
    };
    port.serve(listener, router, shutdown, stopping).await
}
