//! A service's public port, served with hyper directly because `axum::serve` has no header
//! timeout and does not count sockets (the outside probe held 300 half-sent requests on the
//! console for 45 s, and under `ulimit -n 128` 130 of them made `/healthz` time out).
//!
//! Every accepted socket is counted from accept to close; past the total cap, or past its
//! address's share, a new one is closed at once. Its request headers must arrive within the
//! header timeout (and fit in the header-size limit, when one is set) and its HTTP phase
//! end within the connection timeout: a websocket upgrade for the transport, the one
//! request of a connection for the console. Each refusal is counted in the service's
//! `…_sockets_closed_total` by `reason`. One implementation for the transport and the
//! console.

mod sockets;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;
use tracing::{debug, warn};

pub use sockets::address_bucket;
use sockets::{Admission, Counted};

/// `reason`: past the total socket cap.
pub const MAX_SOCKETS: &str = "max_sockets";
/// `reason`: past the address's share of sockets.
pub const MAX_SOCKETS_PER_IP: &str = "max_sockets_per_ip";
/// `reason`: the request's headers did not arrive within the header timeout.
pub const HEADER_TIMEOUT: &str = "header_timeout";
/// `reason`: the request's headers are larger than the header-size limit (answered 431).
pub const HEADER_TOO_LARGE: &str = "header_too_large";

/// How long shutdown waits for plain HTTP exchanges (not websockets) to finish.
const HTTP_DRAIN: Duration = Duration::from_secs(2);
/// Pause after a failed accept (out of file descriptors, typically) so the loop does not
/// spin while nothing can be accepted.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The service's names for what the port counts.
#[derive(Debug, Clone, Copy)]
pub struct SocketMetrics {
    /// Gauge of open sockets.
    pub open: &'static str,
    /// Counter of sockets closed by a limit, by `reason`.
    pub closed: &'static str,
    /// Counter of failed accepts.
    pub accept_errors: &'static str,
    /// The `reason` of [`closed`](Self::closed) for the connection timeout
    /// (`handshake_timeout` for the transport, `request_timeout` for the console).
    pub timeout_reason: &'static str,
}

/// The limits of a public port.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time from accept to the end of the connection's HTTP phase.
    pub connection_timeout: Duration,
    /// Sockets open at once.
    pub max_sockets: usize,
    /// Sockets one client address (IPv6: its /64) may hold; `None` when the peer address is
    /// not the client's (behind a proxy it would be a second global cap).
    pub max_sockets_per_address: Option<usize>,
    /// Largest request head (request line and headers) read, in bytes (at least 8,192);
    /// `None` keeps hyper's default (about 400 KiB).
    pub max_header_bytes: Option<usize>,
    /// Whether a connection may carry more than one request.
    pub keep_alive: bool,
}

/// A public port: its limits and the names it counts under.
#[derive(Debug, Clone, Copy)]
pub struct PublicPort {
    /// The limits.
    pub limits: SocketLimits,
    /// The metric names.
    pub metrics: SocketMetrics,
}

impl PublicPort {
    /// Serves `router` on `listener` until `shutdown` completes (handlers read the peer as
    /// `ConnectInfo<SocketAddr>`); then stops accepting, calls `stopping` (the service closes
    /// what it holds open, e.g. websockets) and lets plain HTTP exchanges finish for up to
    /// 2 s.
    pub async fn serve(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send,
        stopping: impl FnOnce() + Send,
    ) -> io::Result<()> {
        let limits = self.limits;
        let admission = Admission::new(
            limits.max_sockets,
            limits.max_sockets_per_address,
            self.metrics,
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        // Each HTTP exchange holds a clone; `recv` returns `None` once all are dropped.
        let (busy_tx, mut busy_rx) = mpsc::channel::<()>(1);
        let mut shutdown = pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    metrics::counter!(self.metrics.accept_errors).increment(1);
                    warn!("accept: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(socket) = admission.admit(tcp, remote) else {
                continue;
            };
            let exchange = Exchange {
                router: router.clone(),
                remote,
                limits,
                metrics: self.metrics,
                stop: stop_rx.clone(),
                _busy: busy_tx.clone(),
            };
            tokio::spawn(exchange.run(socket));
        }
        drop(listener);
        stopping();
        let _ = stop_tx.send(true);
        drop(busy_tx);
        let _ = tokio::time::timeout(HTTP_DRAIN, busy_rx.recv()).await;
        Ok(())
    }
}

/// One connection's HTTP phase: requests until a websocket upgrade (then the websocket
/// lives on in its own task, still holding the [`Counted`] socket) or the end.
struct Exchange {
    router: Router,
    remote: SocketAddr,
    limits: SocketLimits,
    metrics: SocketMetrics,
    stop: watch::Receiver<bool>,
    /// Dropped when the exchange ends (shutdown waits for every one).
    _busy: mpsc::Sender<()>,
}

impl Exchange {
    async fn run(mut self, socket: Counted) {
        let (router, remote) = (self.router.clone(), self.remote);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(self.limits.keep_alive);
        if let Some(max) = self.limits.max_header_bytes {
            // hyper's read buffer: a head that does not fit is answered 431.
            builder.max_buf_size(max);
        }
        let connection = builder
            .serve_connection(TokioIo::new(socket), service)
            .with_upgrades();
        let mut connection = pin!(connection);
        // At shutdown an exchange finishes its request, then closes (websockets are closed
        // by the service's `stopping`).
        let served = async {
            tokio::select! {
                result = connection.as_mut() => return result,
                _ = self.stop.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            connection.await
        };
        let closed = self.metrics.closed;
        match tokio::time::timeout(self.limits.connection_timeout, served).await {
            Err(_) => {
                metrics::counter!(closed, "reason" => self.metrics.timeout_reason).increment(1);
            }
            Ok(Err(err)) if err.is_timeout() => {
                metrics::counter!(closed, "reason" => HEADER_TIMEOUT).increment(1);
            }
            Ok(Err(err)) if err.is_parse_too_large() && self.limits.max_header_bytes.is_some() => {
                metrics::counter!(closed, "reason" => HEADER_TOO_LARGE).increment(1);
            }
            Ok(Err(err)) => debug!(%remote, "HTTP connection: {err}"),
            Ok(Ok(())) => {}
        }
    }
}
