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
//! The JetStream topology is not created here: the launcher runs
//! `offpath_protocol::topology::ensure` first, so tests can use their own settings.

mod cache;
mod config;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod service;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use offpath_protocol::Limits;
use offpath_protocol::subject::{MODERATION_STREAM, MODERATOR_CONSUMER};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
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
    /// NATS or JetStream refused something at start-up.
    #[error("NATS: {0}")]
    Nats(String),
}

/// Runs the moderator until `shutdown` completes: then stops pulling, finishes what it
/// holds (up to a grace period; the rest is redelivered to other moderators) and returns.
/// `/metrics`, `/healthz` and `/readyz` are served on `listener` meanwhile.
pub async fn run(
    config: Config,
    client: async_nats::Client,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ModeratorError> {
    http::prometheus();
    let max_in_flight = config.max_in_flight.max(1);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let health = Arc::new(http::Health::new(
        client.clone(),
        max_in_flight,
        Duration::from_millis(config.stall_after_ms),
    ));
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, Arc::clone(&health), async {
        let _ = http_stopped.await;
    }));
    let result = run_inner(config, client, permits, Arc::clone(&health), shutdown).await;
    let _ = http_stop.send(());
    let _ = server.await;
    result
}

async fn run_inner(
    config: Config,
    client: async_nats::Client,
    permits: Arc<Semaphore>,
    health: Arc<http::Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ModeratorError> {
    let library: PathBuf = config
        .ort_library
        .clone()
        .ok_or(ModeratorError::NoRuntime)?;
    offpath_classifier::init_runtime(&library)?;
    let pool_config = config.clone();
    let pool = tokio::task::spawn_blocking(move || pool::Pool::start(&pool_config))
        .await
        .map_err(|e| ModeratorError::Thread(e.to_string()))??;
    let client_for_service = client.clone();
    let js = jetstream::new(client);
    let nats = |e: &dyn std::fmt::Display| ModeratorError::Nats(e.to_string());
    let stream = js
        .get_stream(MODERATION_STREAM)
        .await
        .map_err(|e| nats(&e))?;
    let consumer: PullConsumer = stream
        .get_consumer(MODERATOR_CONSUMER)
        .await
        .map_err(|e| nats(&e))?;
    let max_deliver = consumer.cached_info().config.max_deliver;
    let max_ack_pending = consumer.cached_info().config.max_ack_pending;
    let max_in_flight = config.max_in_flight.max(1);
    if max_ack_pending > 0 && max_in_flight as i64 > max_ack_pending {
        warn!(
            max_in_flight,
            max_ack_pending, "max_in_flight exceeds the consumer's max_ack_pending"
        );
    }
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(config.max_batch.clamp(1, max_in_flight))
        .messages()
        .await
        .map_err(|e| nats(&e))?;
    let (model, version) = pool.model();
    info!(
        model,
        version,
        threads = config.inference_threads,
        "moderator ready"
    );

    health.set_loaded();
    let ack_wait = consumer.cached_info().config.ack_wait;
    let shared = Arc::new(pipeline::Shared {
        js,
        pool,
        health,
        cache: cache::VerdictCache::new(
            config.cache_entries,
            Duration::from_millis(config.cache_window_ms),
        ),
        // Often enough that a slow batch never reaches ack_wait (and gets redelivered).
        progress_every: (ack_wait / 3).max(Duration::from_millis(100)),
        limits: Limits {
            max_request_bytes: config.max_request_bytes,
        },
        max_deliver: if max_deliver > 0 {
            max_deliver
        } else {
            i64::MAX
        },
        nak_delay: Duration::from_millis(config.nak_delay_ms),
    });
    // Holds every request this process has pulled and not settled (bounded by the permits).
    let (batch_tx, batch_rx) = mpsc::channel(max_in_flight);
    let slots = Arc::new(Semaphore::new(config.inference_threads.max(1)));
    let batcher = pipeline::batcher(
        Arc::clone(&shared),
        batch_rx,
        slots,
        config.max_batch.max(1),
        config.max_wait(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let classify = service::Classify::new(
        batch_tx.clone(),
        Arc::clone(&permits),
        Arc::clone(&shared.health),
    );
    let micro = service::serve(
        client_for_service,
        classify,
        Arc::clone(&shared.health),
        shared.limits,
        (
            Duration::from_millis(config.classify_timeout_ms),
            config.classify_concurrency.max(1),
        ),
        stop_rx,
    );
    let micro = async {
        if let Err(err) = micro.await {
            warn!("the offpath.classify service stopped: {err}");
        }
    };
    let intake = async {
        let mut side_tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let next = tokio::select! {
                () = &mut shutdown => break,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let held = shared.health.hold(permit);
                    pipeline::intake(&shared, message, held, &batch_tx, &mut side_tasks).await
                }
                Some(Err(err)) => {
                    ::metrics::counter!(metrics::NATS_ERRORS, "operation" => "pull").increment(1);
                    warn!("pulling requests: {err}");
                }
                None => break,
            }
            while side_tasks.try_join_next().is_some() {}
        }
        info!("shutting down: no more pulls; settling requests in flight");
        let _ = stop_tx.send(true);
        drop(messages);
        drop(batch_tx);
        while side_tasks.join_next().await.is_some() {}
    };
    let ((), (), ()) = tokio::join!(intake, batcher, micro);
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        warn!("shutdown grace passed; unsettled requests will be redelivered");
    }
    info!("moderator stopped");
    Ok(())
}
