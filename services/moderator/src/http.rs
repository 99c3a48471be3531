//! The operator's endpoints on their own port: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive) and `/readyz` (models loaded, JetStream consumer bound, NATS
//! connected, and — when there is work — inference progressed recently: a hung model makes
//! the moderator not ready).
//! A moderator is stalled when it holds requests and none finished for `stall_after`,
//! timed from the oldest request it holds: an idle moderator stays ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics as m;
use crate::pipeline::now_ms;

/// What `/readyz` looks at. Times are milliseconds since `epoch` (monotonic).
pub struct Health {
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
pub struct Held {
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
    pub fn new(client: async_nats::Client, max_in_flight: usize, stall_after: Duration) -> Self {
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
    pub fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Relaxed);
    }

    /// The JetStream consumer is bound: requests are being pulled.
    pub fn set_bound(&self) {
        *lock(&self.unbound) = None;
    }

    /// The JetStream consumer is not bound, for `reason`.
    pub fn set_unbound(&self, reason: String) {
        *lock(&self.unbound) = Some(reason);
    }

    /// Takes a request in: it counts as held until the returned guard is dropped.
    pub fn hold(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Held {
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        lock(&self.held).insert(id, self.now());
        Held {
            _permit: permit,
            health: Arc::clone(self),
            id,
        }
    }

    /// A batch of `size` requests finished inference.
    pub fn progressed(&self, size: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched.fetch_add(size as u64, Ordering::Relaxed);
        self.last_progress.store(self.now(), Ordering::Relaxed);
        metrics::gauge!(m::LAST_PROGRESS).set(now_ms() as f64 / 1000.0);
    }

    /// Requests taken in and not yet settled.
    pub fn in_flight(&self) -> usize {
        lock(&self.held).len()
    }

    /// Batch and queue figures for `$SRV.STATS`.
    pub fn stats(&self) -> serde_json::Value {
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
    pub fn readiness(&self) -> Result<(), Vec<String>> {
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

/// The process-wide Prometheus recorder (installed once; buckets set here, in one place).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let seconds = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ];
        let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(m::BATCH_SIZE.into()), &sizes));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (an embedding program's): then
        // /metrics shows this recorder's (empty) view and the program's own exporter rules.
        let _ = metrics::set_global_recorder(recorder);
        m::describe();
        process_metrics().describe();
        m::register();
        handle
    })
}

/// The `process_*` collector, read at every scrape.
fn process_metrics() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// `/metrics`: the process figures of now, then everything.
async fn render() -> String {
    process_metrics().collect();
    prometheus().render()
}

/// Serves the endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = prometheus();
    let upkeep = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    result
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    match health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        ),
    }
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
