//! The operator's endpoints on their own port: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive) and `/readyz` (models loaded, NATS connected, and — when there
//! is work — inference progressed recently: a hung model makes the moderator not ready).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;

use crate::metrics as m;
use crate::pipeline::now_ms;

/// What `/readyz` looks at.
pub struct Health {
    loaded: AtomicBool,
    last_progress_ms: AtomicU64,
    batches: AtomicU64,
    batched: AtomicU64,
    client: async_nats::Client,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    stall_after: Duration,
}

impl Health {
    /// Health of a moderator holding at most `max_in_flight` requests through `permits`.
    pub fn new(
        client: async_nats::Client,
        permits: Arc<Semaphore>,
        max_in_flight: usize,
        stall_after: Duration,
    ) -> Self {
        Self {
            loaded: AtomicBool::new(false),
            last_progress_ms: AtomicU64::new(now_ms()),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
            client,
            permits,
            max_in_flight,
            stall_after,
        }
    }

    /// The models are loaded and the consumer is bound.
    pub fn set_loaded(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::Relaxed);
        self.loaded.store(true, Ordering::Relaxed);
    }

    /// A batch of `size` requests finished inference.
    pub fn progressed(&self, size: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched.fetch_add(size as u64, Ordering::Relaxed);
        let now = now_ms();
        self.last_progress_ms.store(now, Ordering::Relaxed);
        metrics::gauge!(m::LAST_PROGRESS).set(now as f64 / 1000.0);
    }

    /// Requests pulled and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.permits.available_permits())
    }

    /// Batch and queue figures for `$SRV.STATS`.
    pub fn stats(&self) -> serde_json::Value {
        let batches = self.batches.load(Ordering::Relaxed);
        let batched = self.batched.load(Ordering::Relaxed);
        serde_json::json!({
            "batches": batches,
            "batched_requests": batched,
            "mean_batch_size": if batches == 0 { 0.0 } else { batched as f64 / batches as f64 },
            "in_flight": self.in_flight(),
            "max_in_flight": self.max_in_flight,
            "ms_since_progress": now_ms().saturating_sub(self.last_progress_ms.load(Ordering::Relaxed)),
            "ready": self.readiness().is_ok(),
        })
    }

    /// `Ok` when ready, else the reasons.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if !self.loaded.load(Ordering::Relaxed) {
            reasons.push("models not loaded".to_string());
        }
        if self.client.connection_state() != async_nats::connection::State::Connected {
            reasons.push("NATS not connected".to_string());
        }
        let idle_ms = now_ms().saturating_sub(self.last_progress_ms.load(Ordering::Relaxed));
        let in_flight = self.in_flight();
        if in_flight > 0 && idle_ms > self.stall_after.as_millis() as u64 {
            reasons.push(format!(
                "no inference progress for {idle_ms} ms with {in_flight} requests in flight"
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
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
        handle
    })
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
        .route("/metrics", get(|| async { prometheus().render() }))
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
