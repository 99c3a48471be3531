//! The offpath moderator: a JetStream pull consumer shared by every moderator process
//! (start more processes for more throughput), classifying requests in batches on
//! dedicated inference threads and publishing verdicts.
//!
//! Flow: pull (at most `max_in_flight` requests held) → [`pipeline::intake`]: strict decode
//! (failures become dead letters), expiry (an `unmoderated` verdict without inference) →
//! [`pipeline::batcher`]: batches by count and wait time, waiting for a free inference
//! thread → [`pool::Pool`]: ONNX Runtime on OS threads under a watchdog → verdict published
//! to `VERDICTS` → request acked (at-least-once: the verdict is stored before the ack).
//!
//! The launcher puts the JetStream topology in place first. When the `MODERATION` stream
//! or the `moderator` consumer is missing (at start-up, or deleted while running), the
//! moderator re-creates what is missing from `config.topology` and binds again
//! ([`consumer`]); `/readyz` says "consumer not bound" meanwhile, and after
//! `rebind_give_up_ms` of failures [`run`] returns an error.

mod cache;
mod config;
mod consumer;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod service;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use offpath_protocol::Limits;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{info, warn};

pub use config::{Config, Faults};

/// How long shutdown waits for in-flight requests before leaving them to redelivery.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Why the moderator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ModeratorError {
    /// No ONNX Runtime library was configured.
    #[error("no ONNX Runtime library configured (--ort-library or ORT_DYLIB_PATH)")]
    NoRuntime,
    /// A model or the runtime could not be loaded.
    #[error(transparent)]
    Classifier(#[from] offpath_classifier::ClassifierError),
    /// An inference thread could not be started.
    #[error("inference thread: {0}")]
    Thread(String),
    /// NATS or JetStream refused something.
    #[error("NATS: {0}")]
    Nats(String),
    /// The JetStream consumer could not be bound (nor the missing topology re-created) for
    /// `--rebind-give-up-ms`: the moderator stops rather than idle while looking alive.
    #[error("consumer not bound for {} ms, giving up: {reason}", waited.as_millis())]
    Unbound {
        /// How long binding was tried.
        waited: Duration,
        /// The last attempt's error.
        reason: String,
    },
}

/// Runs the moderator until `shutdown` completes: then stops pulling, finishes what it
/// holds (up to a grace period; the rest is redelivered to other moderators) and returns
/// `Ok`. Returns an error if it cannot start, or if its consumer stays unbound for
/// `rebind_give_up_ms`: it never returns `Ok` without being asked to stop.
/// `/metrics`, `/healthz` and `/readyz` are served on `listener` meanwhile.
pub async fn run(
    config: Config,
    client: async_nats::Client,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ModeratorError> {
    http::prometheus();
    let max_in_flight = config.max_in_flight.max(1);
    let health = Arc::new(http::Health::new(
        client.clone(),
        max_in_flight,
        Duration::from_millis(config.stall_after_ms),
    ));
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, Arc::clone(&health), async {
        let _ = http_stopped.await;
    }));
    let result = run_inner(config, client, health, shutdown).await;
    if let Err(err) = &result {
        warn!("moderator stopped: {err}");
    }
    let _ = http_stop.send(());
    let _ = server.await;
    result
}

/// Loads the models, then runs intake (pull), the batcher and the micro service together
/// until intake ends, and waits (up to a grace period) for held requests to settle.
async fn run_inner(
    config: Config,
    client: async_nats::Client,
    health: Arc<http::Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ModeratorError> {
    let max_in_flight = config.max_in_flight.max(1);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let js = jetstream::new(client.clone());
    let shared = Arc::new(pipeline::Shared {
        js: js.clone(),
        pool: start_pool(&config).await?,
        health,
        cache: cache::VerdictCache::new(
            config.cache_entries,
            Duration::from_millis(config.cache_window_ms),
        ),
        limits: Limits {
            max_request_bytes: config.max_request_bytes,
        },
        consumer: consumer::Settings::new(&config.topology),
        nak_delay: Duration::from_millis(config.nak_delay_ms),
    });
    let (model, version) = shared.pool.model();
    metrics::model_info(model, version, &config.models);
    let threads = config.inference_threads;
    info!(
        model,
        version, threads, "models loaded; binding the consumer"
    );
    shared.health.set_loaded();
    // Holds every request this process has taken in and not settled (bounded by the permits).
    let (batch_tx, batch_rx) = mpsc::channel(max_in_flight);
    let slots = Arc::new(Semaphore::new(config.inference_threads.max(1)));
    let batcher = pipeline::batcher(
        Arc::clone(&shared),
        batch_rx,
        slots,
        config.max_batch.max(1),
        config.max_wait(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let classify = service::Classify::new(
        batch_tx.clone(),
        Arc::clone(&permits),
        Arc::clone(&shared.health),
    );
    let call_limits = (
        Duration::from_millis(config.classify_timeout_ms),
        config.classify_concurrency.max(1),
    );
    let backlog = consumer::report_backlog(js.clone(), stop_rx.clone());
    let micro = micro_service(client, &shared, classify, call_limits, stop_rx);
    let intake = consumer::Intake {
        js,
        config,
        shared: Arc::clone(&shared),
        permits: Arc::clone(&permits),
        batches: batch_tx,
    };
    let intake = async {
        let result = intake.run(shutdown).await;
        let _ = stop_tx.send(true);
        result
    };
    let (result, (), (), ()) = tokio::join!(intake, batcher, micro, backlog);
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        warn!("shutdown grace passed; unsettled requests will be redelivered");
    }
    if result.is_ok() {
        info!("moderator stopped");
    }
    result
}

async fn start_pool(config: &Config) -> Result<pool::Pool, ModeratorError> {
    let library: PathBuf = config
        .ort_library
        .clone()
        .ok_or(ModeratorError::NoRuntime)?;
    offpath_classifier::init_runtime(&library)?;
    let pool_config = config.clone();
    tokio::task::spawn_blocking(move || pool::Pool::start(&pool_config))
        .await
        .map_err(|e| ModeratorError::Thread(e.to_string()))?
}

/// The `offpath.classify` micro service, with `(timeout, concurrency)` per call, until
/// `stop` turns true; its failure is logged (the stream keeps being served).
async fn micro_service(
    client: async_nats::Client,
    shared: &pipeline::Shared,
    classify: service::Classify,
    limits: (Duration, usize),
    stop: watch::Receiver<bool>,
) {
    let health = Arc::clone(&shared.health);
    if let Err(err) = service::serve(client, classify, health, shared.limits, limits, stop).await {
        warn!("the offpath.classify service stopped: {err}");
    }
}
