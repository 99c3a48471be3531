//! Per-address and per-user caps on open websockets, so one client cannot take every slot
//! of `--max-connections`. A [`Slot`] is held for the connection's life and frees itself
//! when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

use crate::frames::Close;
use crate::metrics as m;

/// The open websockets per client address and per user.
#[derive(Debug)]
pub(crate) struct Caps {
    per_ip: usize,
    per_user: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    ips: HashMap<IpAddr, usize>,
    users: HashMap<Arc<str>, usize>,
}

/// One admitted connection's share of the caps; released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    caps: Arc<Caps>,
    ip: IpAddr,
    user: Arc<str>,
}

impl Caps {
    /// At most `per_ip` connections per address and `per_user` per user.
    pub(crate) fn new(per_ip: usize, per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip,
            per_user,
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for `user` at `ip`, or why not (the refusal is counted).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, user: &Arc<str>) -> Result<Slot, Close> {
        let ip = bucket(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let refusal = if open.ips.get(&ip).copied().unwrap_or(0) >= self.per_ip {
            Some(Close::PER_IP)
        } else if open.users.get(user).copied().unwrap_or(0) >= self.per_user {
            Some(Close::PER_USER)
        } else {
            None
        };
        if let Some(close) = refusal {
            metrics::counter!(m::DISCONNECTS, "reason" => close.reason).increment(1);
            return Err(close);
        }
        *open.ips.entry(ip).or_default() += 1;
        *open.users.entry(Arc::clone(user)).or_default() += 1;
        Ok(Slot {
            caps: Arc::clone(self),
            ip,
            user: Arc::clone(user),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        release(&mut open.ips, &self.ip);
        release(&mut open.users, &self.user);
    }
}

/// One less for `key`; the entry goes with its last connection (the maps stay as small as
/// the set of connected clients).
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// The address a cap counts (IPv6 by its /64): the same as the public port's.
pub(crate) use offpath_ops::public::address_bucket as bucket;

/// The client's address: the last address of `header` when the operator named one (a
/// proxy in front appends the address it saw), else, or when the header is absent or
/// unreadable, the socket's peer.
pub(crate) fn client_ip(headers: &HeaderMap, header: Option<&str>, peer: IpAddr) -> IpAddr {
    let Some(name) = header else { return peer };
    headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cap refuses the one past it and frees a slot when a connection ends; an IPv6
    /// /64 counts as one address.
    #[test]
    fn caps_count_and_release() {
        let caps = Caps::new(2, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let alice: Arc<str> = "alice".into();
        let first = caps.admit(a, &alice).unwrap();
        let _second = caps.admit(a, &alice).unwrap();
        assert_eq!(caps.admit(a, &"bob".into()).unwrap_err(), Close::PER_IP);
        let _third = caps.admit(b, &alice).unwrap();
        assert_eq!(caps.admit(b, &alice).unwrap_err(), Close::PER_USER);
        drop(first);
        assert!(caps.admit(a, &"bob".into()).is_ok());
        let v6 = Caps::new(1, 10);
        let _one = v6.admit("2001:db8::1".parse().unwrap(), &alice).unwrap();
        let other = v6.admit("2001:db8::ffff".parse().unwrap(), &"bob".into());
        assert_eq!(other.unwrap_err(), Close::PER_IP);
    }

    /// The header is read only when named, and only its last address counts.
    #[test]
    fn client_ip_trusts_the_header_only_when_told() {
        let peer: IpAddr = "192.0.2.9".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 203.0.113.7".parse().unwrap());
        assert_eq!(client_ip(&headers, None, peer), peer);
        let from_proxy = client_ip(&headers, Some("x-forwarded-for"), peer);
        assert_eq!(from_proxy, "203.0.113.7".parse::<IpAddr>().unwrap());
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(&headers, Some("x-forwarded-for"), peer), peer);
    }
}
