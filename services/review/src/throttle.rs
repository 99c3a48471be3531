//! Reviewer-token guessing, throttled per client address: each failed attempt takes a token
//! from its address's bucket (`--auth-failure-burst`, refilled at
//! `--auth-failures-per-minute`); an address with an empty bucket is answered 429 without
//! its token being checked, so guessing runs at the refill rate (it ran at ~1,180 guesses/s).
//! Right tokens take nothing: a reviewer who logs in is never slowed down.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use offpath_ops::public::address_bucket;

/// Addresses tracked at most. Only addresses with recent failures are kept, and a full
/// bucket is forgotten when room is needed; past this many at once (a guesser with
/// thousands of addresses) the newcomers share one bucket, [`OVERFLOW`], so memory stays
/// bounded (~50 bytes an entry) and guessing stays throttled.
const MAX_ADDRESSES: usize = 10_000;
/// The bucket shared by addresses past [`MAX_ADDRESSES`] (no peer has this address).
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Failed logins per client address.
#[derive(Debug)]
pub(crate) struct Throttle {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// At most `burst` failures in a row per address, then `per_minute` a minute.
    pub(crate) fn new(burst: u32, per_minute: f64) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: per_minute / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may try a token now; when not, how long until it may.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = address_bucket(ip);
        let bucket = buckets.get(&key).or_else(|| buckets.get(&OVERFLOW));
        let Some(bucket) = bucket else { return Ok(()) };
        let tokens = self.refilled(bucket, now);
        if tokens >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - tokens) / self.per_second;
        Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
    }

    /// Records a failed attempt from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = address_bucket(ip);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_ADDRESSES {
            // Full buckets say nothing a missing entry does not.
            buckets.retain(|_, bucket| self.refilled(bucket, now) < self.burst);
            if buckets.len() >= MAX_ADDRESSES {
                key = OVERFLOW;
            }
        }
        let fresh = Bucket {
            tokens: self.burst,
            at: now,
        };
        let bucket = buckets.entry(key).or_insert(fresh);
        bucket.tokens = (self.refilled(bucket, now) - 1.0).max(0.0);
        bucket.at = now;
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    /// `burst` failures pass, the next is refused until the refill; another address is not
    /// affected; an IPv6 /64 is one address.
    #[test]
    fn failures_are_limited_per_address() {
        let throttle = Throttle::new(3, 60.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(throttle.check(ip("10.0.0.1"), t0).is_ok());
            throttle.failed(ip("10.0.0.1"), t0);
        }
        let wait = throttle.check(ip("10.0.0.1"), t0).expect_err("throttled");
        assert_eq!(wait, Duration::from_secs(1), "one a second at 60 a minute");
        assert!(throttle.check(ip("10.0.0.2"), t0).is_ok());
        let later = t0 + Duration::from_millis(1_000);
        assert!(throttle.check(ip("10.0.0.1"), later).is_ok(), "refilled");
        throttle.failed(ip("10.0.0.1"), later);
        assert!(throttle.check(ip("10.0.0.1"), later).is_err());
        for _ in 0..3 {
            throttle.failed(ip("2001:db8::1"), t0);
        }
        assert!(
            throttle.check(ip("2001:db8::ffff"), t0).is_err(),
            "same /64"
        );
    }

    /// Past [`MAX_ADDRESSES`] addresses with failures, newcomers share one bucket; full
    /// buckets are forgotten first.
    #[test]
    fn memory_is_bounded() {
        let throttle = Throttle::new(2, 60.0);
        let t0 = Instant::now();
        for n in 0..MAX_ADDRESSES as u32 {
            throttle.failed(IpAddr::from(n.to_be_bytes()), t0);
        }
        let stranger = ip("203.0.113.9");
        throttle.failed(stranger, t0);
        throttle.failed(ip("203.0.113.10"), t0);
        assert!(
            throttle.check(stranger, t0).is_err(),
            "the shared bucket is empty"
        );
        let len = || throttle.buckets.lock().unwrap().len();
        assert_eq!(len(), MAX_ADDRESSES + 1);
        // A minute later every bucket is full again: the next newcomer makes room.
        let later = t0 + Duration::from_secs(60);
        throttle.failed(stranger, later);
        assert_eq!(len(), 1);
        assert!(throttle.check(stranger, later).is_ok());
    }
}
