//! The public port's accept loop: every accepted socket is counted from accept to close
//! (past `--max-sockets`, or past its address's share, a new one is closed at once), its request headers must arrive
//! within `--header-timeout-ms` and its websocket upgrade within
//! `--handshake-timeout-ms`. Served with hyper directly because `axum::serve` has neither
//! timeout and does not count sockets.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::metrics as m;
use crate::{caps, http};

/// How long shutdown waits for plain HTTP exchanges (not websockets) to finish.
const HTTP_DRAIN: Duration = Duration::from_secs(2);
/// Pause after a failed accept (out of file descriptors, typically) so the loop does not
/// spin while nothing can be accepted.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves chat clients until `shutdown` completes; then refuses new connections, closes
/// every socket with a going-away frame and lets plain HTTP exchanges finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: http::App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = app.hub.config();
    // Behind a proxy every socket comes from the proxy: only the global cap applies then.
    let per_address = config.client_ip_header.is_none().then(|| {
        Arc::new(PerAddress {
            max: config.max_connections_per_ip.saturating_mul(2),
            open: Mutex::new(HashMap::new()),
        })
    });
    let limits = Limits {
        header: Duration::from_millis(config.header_timeout_ms),
        handshake: Duration::from_millis(config.handshake_timeout_ms),
        max_sockets: config.max_sockets,
        open: Arc::new(AtomicUsize::new(0)),
        per_address,
    };
    let router = http::public(app.clone());
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
                metrics::counter!(m::ACCEPT_ERRORS).increment(1);
                warn!("accept: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(socket) = limits.admit(tcp, remote) else {
            continue;
        };
        let exchange = Exchange {
            router: router.clone(),
            remote,
            stop: stop_rx.clone(),
            _busy: busy_tx.clone(),
        };
        tokio::spawn(exchange.run(socket, limits.header, limits.handshake));
    }
    drop(listener);
    info!("shutting down: closing sockets, then flushing the outbox");
    app.stopping.store(true, Ordering::Relaxed);
    app.hub.close_all();
    let _ = stop_tx.send(true);
    drop(busy_tx);
    let _ = tokio::time::timeout(HTTP_DRAIN, busy_rx.recv()).await;
    Ok(())
}

/// The socket limits of the public port.
struct Limits {
    header: Duration,
    handshake: Duration,
    max_sockets: usize,
    /// Sockets open now.
    open: Arc<AtomicUsize>,
    /// Sockets per client address, when the peer address is the client's.
    per_address: Option<Arc<PerAddress>>,
}

impl Limits {
    /// The socket, counted, or `None` (closed and counted) past the address's share or
    /// `--max-sockets`.
    fn admit(&self, tcp: TcpStream, remote: SocketAddr) -> Option<Counted> {
        let address = match &self.per_address {
            Some(per_address) => Some(per_address.take(remote.ip())?),
            None => None,
        };
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_sockets {
            self.open.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(m::SOCKETS_CLOSED, "reason" => "max_sockets").increment(1);
            return None;
        }
        metrics::gauge!(m::SOCKETS).increment(1.0);
        // Chat frames are small and latency matters: no Nagle delay on client sockets.
        if let Err(err) = tcp.set_nodelay(true) {
            warn!("TCP_NODELAY: {err}");
        }
        Some(Counted {
            tcp,
            open: Arc::clone(&self.open),
            _address: address,
        })
    }
}

/// Open sockets per client address: twice `--max-connections-per-ip` (its websockets and
/// as many handshakes), so one address cannot fill `--max-sockets` with half-open sockets.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A share for `ip`, or `None` (counted) when it holds its maximum.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressShare> {
        let ip = caps::bucket(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            metrics::counter!(m::SOCKETS_CLOSED, "reason" => "max_sockets_per_ip").increment(1);
            return None;
        }
        *count += 1;
        Some(AddressShare {
            owner: Arc::clone(self),
            ip,
        })
    }
}

/// One socket's share of its address's sockets; given back on drop.
struct AddressShare {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressShare {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// One connection's HTTP phase: requests until the websocket upgrade (then the websocket
/// lives on in its own task, still holding the [`Counted`] socket) or the end.
struct Exchange {
    router: Router,
    remote: SocketAddr,
    stop: watch::Receiver<bool>,
    /// Dropped when the exchange ends (shutdown waits for every one).
    _busy: mpsc::Sender<()>,
}

impl Exchange {
    async fn run(mut self, socket: Counted, header: Duration, handshake: Duration) {
        let (router, remote) = (self.router.clone(), self.remote);
        // Handlers read the client's address as `ConnectInfo<SocketAddr>`.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header)
            .serve_connection(TokioIo::new(socket), service)
            .with_upgrades();
        let mut connection = pin!(connection);
        // At shutdown an exchange finishes its request, then closes (websockets are closed
        // by the hub).
        let served = async {
            tokio::select! {
                result = connection.as_mut() => return result,
                _ = self.stop.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            connection.await
        };
        match tokio::time::timeout(handshake, served).await {
            Err(_) => {
                metrics::counter!(m::SOCKETS_CLOSED, "reason" => "handshake_timeout").increment(1);
            }
            Ok(Err(err)) if err.is_timeout() => {
                metrics::counter!(m::SOCKETS_CLOSED, "reason" => "header_timeout").increment(1);
            }
            Ok(Err(err)) => debug!(%remote, "HTTP connection: {err}"),
            Ok(Ok(())) => {}
        }
    }
}

/// An accepted socket that counts itself out of `--max-sockets` when closed, whether that
/// happens in the HTTP phase or after the upgrade (hyper hands the same socket to the
/// websocket).
struct Counted {
    tcp: TcpStream,
    open: Arc<AtomicUsize>,
    /// The address's share, when addresses are counted.
    _address: Option<AddressShare>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(m::SOCKETS).decrement(1.0);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
