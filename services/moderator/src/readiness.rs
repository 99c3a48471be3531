//! What `/readyz` and `$SRV.STATS` read: models loaded, JetStream consumer bound, NATS
//! connected, and — when there is work — inference progressed recently: a hung model makes
//! the moderator not ready. The pipeline writes it; the HTTP side only reads it.
//! A moderator is stalled when it holds requests and none finished for `stall_after`,
//! timed from the oldest request it holds: an idle moderator stays ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use offpath_protocol::now_ms;
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics as m;

/// What `/readyz` looks at. Times are milliseconds since `epoch` (monotonic).
pub(crate) struct Health {
    loaded: AtomicBool,
    /// Why the JetStream consumer is not bound, while it is not.
    unbound: Mutex<Option<String>>,
    epoch: Instant,
    last_progress: AtomicU64,
    /// Requests taken in and not settled: hold id → when taken in. Ids grow with time, so
    /// the first entry is the oldest.
    held: Mutex<BTreeMap<u64, u64>>,
    next_hold: AtomicU64,
    batches: AtomicU64,
    batched: AtomicU64,
    client: async_nats::Client,
    max_in_flight: usize,
    stall_after: Duration,
}

/// A request taken in (pulled, or a synchronous call) and not yet settled: its in-flight
/// permit and its place on the stall clock, both released when this is dropped.
pub(crate) struct Held {
    _permit: OwnedSemaphorePermit,
    health: Arc<Health>,
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.health.held).remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Health {
    /// Health of a moderator holding at most `max_in_flight` requests, stalled when it
    /// holds requests and none finished for `stall_after`. Not bound until [`set_bound`].
    ///
    /// [`set_bound`]: Self::set_bound
    pub(crate) fn new(
        client: async_nats::Client,
        max_in_flight: usize,
        stall_after: Duration,
    ) -> Self {
        Self {
            loaded: AtomicBool::new(false),
            unbound: Mutex::new(Some("not bound yet".into())),
            epoch: Instant::now(),
            last_progress: AtomicU64::new(0),
            held: Mutex::new(BTreeMap::new()),
            next_hold: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
            client,
            max_in_flight,
            stall_after,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The models are loaded.
    pub(crate) fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Relaxed);
    }

    /// The JetStream consumer is bound: requests are being pulled.
    pub(crate) fn set_bound(&self) {
        *lock(&self.unbound) = None;
    }

    /// The JetStream consumer is not bound, for `reason`.
    pub(crate) fn set_unbound(&self, reason: String) {
        *lock(&self.unbound) = Some(reason);
    }

    /// Takes a request in: it counts as held until the returned guard is dropped.
    pub(crate) fn hold(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Held {
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        lock(&self.held).insert(id, self.now());
        Held {
            _permit: permit,
            health: Arc::clone(self),
            id,
        }
    }

    /// A batch of `size` requests finished inference.
    pub(crate) fn progressed(&self, size: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched.fetch_add(size as u64, Ordering::Relaxed);
        self.last_progress.store(self.now(), Ordering::Relaxed);
        metrics::gauge!(m::LAST_PROGRESS).set(now_ms() as f64 / 1000.0);
    }

    /// Requests taken in and not yet settled.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.held).len()
    }

    /// Batch and queue figures for `$SRV.STATS`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let batches = self.batches.load(Ordering::Relaxed);
        let batched = self.batched.load(Ordering::Relaxed);
        let since_progress = self
            .now()
            .saturating_sub(self.last_progress.load(Ordering::Relaxed));
        serde_json::json!({
            "batches": batches,
            "batched_requests": batched,
            "mean_batch_size": if batches == 0 { 0.0 } else { batched as f64 / batches as f64 },
            "in_flight": self.in_flight(),
            "max_in_flight": self.max_in_flight,
            "ms_since_progress": since_progress,
            "ready": self.readiness().is_ok(),
        })
    }

    /// `Ok` when ready, else the reasons.
    pub(crate) fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if !self.loaded.load(Ordering::Relaxed) {
            reasons.push("models not loaded".to_string());
        }
        if let Some(reason) = lock(&self.unbound).as_ref() {
            reasons.push(format!("consumer not bound: {reason}"));
        }
        if self.client.connection_state() != async_nats::connection::State::Connected {
            reasons.push("NATS not connected".to_string());
        }
        let (held, oldest) = {
            let held = lock(&self.held);
            (held.len(), held.first_key_value().map(|(_, &at)| at))
        };
        let last_progress = self.last_progress.load(Ordering::Relaxed);
        let stall_after = self.stall_after.as_millis() as u64;
        if let Some(waited) = stalled_for(self.now(), last_progress, oldest, stall_after) {
            reasons.push(format!(
                "no inference progress for {waited} ms with {held} requests in flight"
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// How long requests have waited without progress, if longer than `stall_after`: timed from
/// the later of the last progress and the oldest held request (`None` when nothing is
/// held), so an idle worker, or one that just took work in after idling, is not stalled.
fn stalled_for(
    now: u64,
    last_progress: u64,
    oldest_held: Option<u64>,
    stall_after: u64,
) -> Option<u64> {
    let waited = now.saturating_sub(last_progress.max(oldest_held?));
    (waited > stall_after).then_some(waited)
}

#[cfg(test)]
mod tests {
    use super::stalled_for;

    /// (now, last progress, oldest held, stall after) → stalled for.
    #[test]
    fn stall_is_timed_from_the_oldest_held_request() {
        let table = [
            // Idle for long: nothing held, never stalled.
            ((100_000, 0, None, 1_000), None),
            // Took a request in after a long idle: timed from the request, not the idle.
            ((100_000, 0, Some(99_500), 1_000), None),
            ((100_000, 0, Some(98_000), 1_000), Some(2_000)),
            // Progress since the oldest request was taken in: timed from the progress.
            ((100_000, 99_900, Some(50_000), 1_000), None),
            ((100_000, 97_000, Some(50_000), 1_000), Some(3_000)),
            // Exactly at the bound is not yet stalled.
            ((2_000, 0, Some(1_000), 1_000), None),
        ];
        for ((now, progress, oldest, after), expected) in table {
            assert_eq!(
                stalled_for(now, progress, oldest, after),
                expected,
                "now {now}, progress {progress}, oldest {oldest:?}"
            );
        }
    }
}
