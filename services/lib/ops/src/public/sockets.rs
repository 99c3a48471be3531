//! Admission of accepted sockets: a total cap and a per-address share, each socket counted
//! from accept to close (whether it is closed in its HTTP phase or after a websocket
//! upgrade, which hands the same socket on).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::warn;

use super::{MAX_SOCKETS, MAX_SOCKETS_PER_IP, SocketMetrics};

/// The address a cap counts: IPv4 as is, IPv6 by its /64 (one host or household is given a
/// whole /64 and can pick any address in it), IPv4-mapped IPv6 as IPv4.
pub fn address_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// The sockets open now, in all and per address.
pub(super) struct Admission {
    max_sockets: usize,
    open: Arc<AtomicUsize>,
    per_address: Option<Arc<PerAddress>>,
    metrics: SocketMetrics,
}

impl Admission {
    pub(super) fn new(
        max_sockets: usize,
        per_address: Option<usize>,
        metrics: SocketMetrics,
    ) -> Self {
        Self {
            max_sockets,
            open: Arc::new(AtomicUsize::new(0)),
            per_address: per_address.map(|max| {
                Arc::new(PerAddress {
                    max,
                    open: Mutex::new(HashMap::new()),
                    metrics,
                })
            }),
            metrics,
        }
    }

    /// The socket, counted, or `None` (closed and counted) past the address's share or
    /// the total cap.
    pub(super) fn admit(&self, tcp: TcpStream, remote: SocketAddr) -> Option<Counted> {
        let address = match &self.per_address {
            Some(per_address) => Some(per_address.take(remote.ip())?),
            None => None,
        };
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_sockets {
            self.open.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(self.metrics.closed, "reason" => MAX_SOCKETS).increment(1);
            return None;
        }
        metrics::gauge!(self.metrics.open).increment(1.0);
        // Chat frames and console answers are small and latency matters: no Nagle delay.
        if let Err(err) = tcp.set_nodelay(true) {
            warn!("TCP_NODELAY: {err}");
        }
        Some(Counted {
            tcp,
            open: Arc::clone(&self.open),
            gauge: self.metrics.open,
            _address: address,
        })
    }
}

/// Open sockets per client address, so one address cannot fill the total cap with
/// half-open sockets.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    metrics: SocketMetrics,
}

impl PerAddress {
    /// A share for `ip`, or `None` (counted) when it holds its maximum.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressShare> {
        let ip = address_bucket(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            metrics::counter!(self.metrics.closed, "reason" => MAX_SOCKETS_PER_IP).increment(1);
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
            // The entry goes with its last socket: the map stays as small as the set of
            // connected addresses.
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An accepted socket that counts itself out of the caps when closed.
pub(super) struct Counted {
    tcp: TcpStream,
    open: Arc<AtomicUsize>,
    gauge: &'static str,
    /// The address's share, when addresses are counted.
    _address: Option<AddressShare>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(self.gauge).decrement(1.0);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 as is, IPv6 by its /64, IPv4-mapped IPv6 as IPv4.
    #[test]
    fn addresses_are_counted_by_their_bucket() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(address_bucket(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(address_bucket(ip("2001:db8::1:2")), ip("2001:db8::"));
        assert_eq!(address_bucket(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
