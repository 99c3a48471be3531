//! How many reports a gateway queues: per reporter (every connection of a user together)
//! and for the whole gateway (its tenant), each a token bucket.
//!
//! An outside tester buried the review queue: every report was its own item, and one
//! reporter account's 16 connections at the send rate made about 640,000 items an hour
//! (issue 26). The send rate is per connection; these quotas are per user and per gateway,
//! so a flood costs the reviewers at most what the quotas let through, whatever the number
//! of connections. A refused report is answered `rate_limited` and counted in
//! `offpath_transport_reports_refused_total{reason}`; the member may report again later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Reporters remembered at most. Past it, reporters whose bucket is full again are
/// forgotten (they lose nothing: a new bucket starts full); when every one is still
/// draining, the new reporter is refused (counted as `reporters_full`).
const MAX_REPORTERS: usize = 100_000;

/// A token bucket: `rate` tokens a second, at most `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    /// Refills up to `now`; whether it is full.
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        self.tokens >= burst
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a report was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The reporter's quota is spent.
    Reporter,
    /// The gateway's quota is spent.
    Gateway,
    /// Too many reporters are draining their quotas at once.
    ReportersFull,
}

impl Refused {
    /// The metric label (one of [`crate::metrics::REPORT_REFUSALS`], in this order).
    pub(crate) fn as_str(self) -> &'static str {
        crate::metrics::REPORT_REFUSALS[self as usize]
    }
}

/// The quotas' settings: reports per minute and bursts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) per_reporter_per_minute: f64,
    pub(crate) reporter_burst: f64,
    pub(crate) per_gateway_per_minute: f64,
    pub(crate) gateway_burst: f64,
}

/// Every reporter's bucket and the gateway's.
#[derive(Debug)]
pub(crate) struct ReportQuota {
    limits: Limits,
    reporters: HashMap<Arc<str>, Bucket>,
    gateway: Bucket,
}

impl ReportQuota {
    pub(crate) fn new(limits: Limits, now: Instant) -> Self {
        Self {
            limits,
            reporters: HashMap::new(),
            gateway: Bucket::full(limits.gateway_burst, now),
        }
    }

    /// Takes one report of `reporter` at `now` from both quotas, or says which is spent
    /// (nothing is taken then).
    pub(crate) fn take(&mut self, reporter: &Arc<str>, now: Instant) -> Result<(), Refused> {
        let Limits {
            per_reporter_per_minute,
            reporter_burst,
            per_gateway_per_minute,
            gateway_burst,
        } = self.limits;
        let (reporter_rate, gateway_rate) = (
            per_reporter_per_minute / 60.0,
            per_gateway_per_minute / 60.0,
        );
        if !self.reporters.contains_key(reporter) && self.reporters.len() >= MAX_REPORTERS {
            self.reporters
                .retain(|_, bucket| !bucket.refill(reporter_rate, reporter_burst, now));
            if self.reporters.len() >= MAX_REPORTERS {
                return Err(Refused::ReportersFull);
            }
        }
        let bucket = self
            .reporters
            .entry(Arc::clone(reporter))
            .or_insert_with(|| Bucket::full(reporter_burst, now));
        let mut mine = *bucket;
        if !mine.take(reporter_rate, reporter_burst, now) {
            *bucket = mine;
            return Err(Refused::Reporter);
        }
        if !self.gateway.take(gateway_rate, gateway_burst, now) {
            return Err(Refused::Gateway);
        }
        *bucket = mine;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> Limits {
        Limits {
            per_reporter_per_minute: 6.0,
            reporter_burst: 3.0,
            per_gateway_per_minute: 6.0,
            gateway_burst: 5.0,
        }
    }

    /// A reporter gets its burst, then one report per refill interval; the gateway's quota
    /// caps all reporters together; a refusal by the gateway takes nothing from the
    /// reporter.
    #[test]
    fn reporters_and_the_gateway_each_have_a_quota() {
        let start = Instant::now();
        let mut quota = ReportQuota::new(limits(), start);
        let alice: Arc<str> = "alice".into();
        for _ in 0..3 {
            assert_eq!(quota.take(&alice, start), Ok(()));
        }
        assert_eq!(quota.take(&alice, start), Err(Refused::Reporter));
        // 6 a minute: one more after 10 s.
        let later = start + Duration::from_secs(10);
        assert_eq!(quota.take(&alice, later), Ok(()));
        assert_eq!(quota.take(&alice, later), Err(Refused::Reporter));
        // The gateway's 5 (and one refilled) are spent by alice's 4 and bob's 2.
        let bob: Arc<str> = "bob".into();
        assert_eq!(quota.take(&bob, later), Ok(()));
        assert_eq!(quota.take(&bob, later), Ok(()));
        assert_eq!(quota.take(&bob, later), Err(Refused::Gateway));
        // One more for the gateway after 10 s; bob's refused one was not taken from him.
        let then = later + Duration::from_secs(10);
        assert_eq!(quota.take(&bob, then), Ok(()));
        assert_eq!(quota.take(&bob, then), Err(Refused::Gateway));
    }

    /// The reporters remembered are bounded: full buckets are forgotten first.
    #[test]
    fn reporters_remembered_are_bounded() {
        let start = Instant::now();
        let roomy = Limits {
            gateway_burst: 1e9,
            per_gateway_per_minute: 1e9,
            ..limits()
        };
        let mut quota = ReportQuota::new(roomy, start);
        for n in 0..MAX_REPORTERS {
            assert!(quota.take(&format!("u{n}").into(), start).is_ok());
        }
        assert_eq!(
            quota.take(&"late".into(), start),
            Err(Refused::ReportersFull)
        );
        // After a refill every bucket is full again, and they are forgotten.
        let later = start + Duration::from_secs(60);
        assert!(quota.take(&"late".into(), later).is_ok());
        assert_eq!(quota.reporters.len(), 1);
    }
}
