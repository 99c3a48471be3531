//! The token buckets that rate a connection's frames and sends, and what a send costs.

use std::time::Instant;

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.take_cost(now, 1.0)
    }

    /// Takes `cost` tokens when at least one is there: the bucket may go into debt by
    /// what one call costs, and nothing more is taken until it has refilled.
    pub(crate) fn take_cost(&mut self, now: Instant, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= cost.max(1.0);
            true
        } else {
            false
        }
    }
}

/// What a `send` of `text_bytes` takes from the send rate: one token per `cost_bytes` bytes,
/// at least one (always one when `cost_bytes` is 0).
pub fn send_cost(text_bytes: usize, cost_bytes: usize) -> f64 {
    if cost_bytes == 0 {
        return 1.0;
    }
    text_bytes.div_ceil(cost_bytes).max(1) as f64
}
