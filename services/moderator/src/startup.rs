//! One moderator's life, in named steps: [`Moderator::new`] sizes it (the in-flight bound,
//! computed once) → [`Moderator::load`] loads the models and builds what every stage
//! shares → [`Moderator::serve`] runs intake, the batcher, the micro service and the
//! backlog report together until intake ends → [`Moderator::drain`] waits, up to a grace
//! period, for the requests still held to settle.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use offpath_protocol::Limits;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{info, warn};

use offpath_protocol::subject::{INTERACTIVE_STREAM, MODERATION_STREAM};

use crate::pipeline::{Pending, Shared};
use crate::policies::{self, LivePolicies};
use crate::readiness::Health;
use crate::{
    Config, ModeratorError, batcher, cache, consumer, metrics, model_reload, pool, service,
};

/// How long shutdown waits for in-flight requests before leaving them to redelivery.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Requests of the interactive lane held at once, beside `--max-in-flight` of the bulk
/// lane: a pool of its own, or a bulk backlog would hold every permit and the interactive
/// lane would wait behind it. Interactive traffic is low in volume (hold rooms).
const INTERACTIVE_IN_FLIGHT: usize = 64;

/// A moderator before it runs: its settings and the bound every stage shares.
pub(crate) struct Moderator {
    config: Config,
    client: async_nats::Client,
    health: Arc<Health>,
    /// `--max-in-flight`, at least 1: requests held at once, pulled or called.
    max_in_flight: usize,
    /// One permit per request held; intake and calls take one, settling gives it back.
    permits: Arc<Semaphore>,
    /// The interactive lane's permits ([`INTERACTIVE_IN_FLIGHT`]).
    lane_permits: Arc<Semaphore>,
}

impl Moderator {
    /// A moderator for `config`, talking to NATS through `client`; nothing runs yet.
    pub(crate) fn new(config: Config, client: async_nats::Client) -> Self {
        let max_in_flight = config.max_in_flight.max(1);
        let stall_after = Duration::from_millis(config.stall_after_ms);
        let health = Arc::new(Health::new(client.clone(), max_in_flight, stall_after));
        Self {
            config,
            client,
            health,
            max_in_flight,
            permits: Arc::new(Semaphore::new(max_in_flight)),
            lane_permits: Arc::new(Semaphore::new(INTERACTIVE_IN_FLIGHT)),
        }
    }

    /// What `/readyz` reads.
    pub(crate) fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// Loads the models, then runs every stage until intake ends (on `shutdown`, or when
    /// the consumer stays unbound), and drains what is held.
    pub(crate) async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ModeratorError> {
        // Before anything that takes time: an operator's SIGHUP must never end the process.
        let hangups = model_reload::listen();
        let shared = self.load().await?;
        let result = self.serve(shared, hangups, shutdown).await;
        self.drain().await;
        if result.is_ok() {
            info!("moderator stopped");
        }
        result
    }

    /// Loads the models on their inference threads and builds what every stage shares.
    async fn load(&self) -> Result<Arc<Shared>, ModeratorError> {
        let config = &self.config;
        let shared = Arc::new(Shared {
            policies: Arc::new(LivePolicies::new(config)?),
            policy_gate: policies::Gate::new(config.signers()?),
            model_files: tokio::sync::Mutex::new(model_reload::ModelFiles::read(&config.models)),
            js: jetstream::new(self.client.clone()),
            pool: start_pool(config).await?,
            health: self.health(),
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
        // The fleet's policies before the first request, when the bucket has a value.
        policies::read_current(&shared).await;
        let models = shared.pool.models();
        metrics::model_info(&models, &shared.policies.manifests(), 1.0);
        let (model, version) = (models.name.as_str(), models.version.as_str());
        let threads = config.inference_threads;
        let names: Vec<String> = shared
            .policies
            .current()
            .policies()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        info!(
            model,
            version,
            threads,
            policies = %names.join(","),
            "models loaded; binding the consumer"
        );
        shared.health.set_loaded();
        Ok(shared)
    }

    /// Runs intake, the batcher, the micro service and the backlog report together; when
    /// intake ends, the micro service and the report are told to stop, and the batcher
    /// ends once every request handed to it is processed.
    async fn serve(
        &self,
        shared: Arc<Shared>,
        hangups: Option<tokio::signal::unix::Signal>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ModeratorError> {
        // Holds every request this process has taken in and not settled (bounded by the permits).
        let (batch_tx, batch_rx) = mpsc::channel(self.max_in_flight);
        // Holds what the interactive lane took in and not settled (bounded by its permits).
        let (lane_tx, lane_rx) = mpsc::channel(INTERACTIVE_IN_FLIGHT);
        let (stop_tx, stop_rx) = watch::channel(false);
        let batcher = self.batcher(&shared, batch_rx, lane_rx);
        let interactive = self.interactive(Arc::clone(&shared), lane_tx, stop_rx.clone());
        let micro = self.micro_service(shared.limits, batch_tx.clone(), stop_rx.clone());
        let reloads = model_reload::reload_on_sighup(Arc::clone(&shared), hangups, stop_rx.clone());
        let bucket = policies::watch_bucket(Arc::clone(&shared), stop_rx.clone());
        let backlog = consumer::report_backlog(shared.js.clone(), stop_rx);
        let intake = self.intake(shared, batch_tx);
        let intake = async {
            let result = intake.run(shutdown).await;
            let _ = stop_tx.send(true);
            result
        };
        let (result, (), (), (), (), (), ()) = tokio::join!(
            intake,
            batcher,
            micro,
            backlog,
            reloads,
            bucket,
            interactive
        );
        result
    }

    /// Pulls from the bulk lane's consumer (binding it, and again when it is lost) into
    /// `batches`.
    fn intake(&self, shared: Arc<Shared>, batches: mpsc::Sender<Pending>) -> consumer::Intake {
        consumer::Intake {
            js: shared.js.clone(),
            config: self.config.clone(),
            shared,
            stream: MODERATION_STREAM,
            in_flight: self.max_in_flight,
            permits: Arc::clone(&self.permits),
            batches,
            reports_health: true,
        }
    }

    /// Pulls from the interactive lane's consumer into `batches` until `stop` turns true. A
    /// lane that cannot be bound (a topology from before lanes, with no right to create it)
    /// is logged and given up; the bulk lane goes on.
    async fn interactive(
        &self,
        shared: Arc<Shared>,
        batches: mpsc::Sender<Pending>,
        mut stop: watch::Receiver<bool>,
    ) {
        let intake = consumer::Intake {
            js: shared.js.clone(),
            config: self.config.clone(),
            shared,
            stream: INTERACTIVE_STREAM,
            in_flight: INTERACTIVE_IN_FLIGHT,
            permits: Arc::clone(&self.lane_permits),
            batches,
            reports_health: false,
        };
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(err) = intake.run(stopped).await {
            warn!("the interactive lane is not served (run `offpath topology`): {err}");
        }
    }

    /// Forms batches from `lane` (the interactive lane, first) and `batches`, one per free
    /// inference thread.
    fn batcher(
        &self,
        shared: &Arc<Shared>,
        batches: mpsc::Receiver<Pending>,
        lane: mpsc::Receiver<Pending>,
    ) -> impl Future<Output = ()> + use<> {
        let slots = batcher::Slots {
            shared: Arc::new(Semaphore::new(self.config.inference_threads.max(1))),
            reserved: Arc::new(Semaphore::new(self.config.interactive_threads)),
        };
        let max_batch = self.config.max_batch.max(1);
        batcher::batcher(
            Arc::clone(shared),
            batcher::Lanes {
                interactive: lane,
                bulk: batches,
            },
            slots,
            max_batch,
            self.config.max_wait(),
        )
    }

    /// The `offpath.classify` micro service (requests of at most `limits`) until `stop`
    /// turns true; its failure is logged (the stream keeps being served).
    async fn micro_service(
        &self,
        limits: Limits,
        batches: mpsc::Sender<Pending>,
        stop: watch::Receiver<bool>,
    ) {
        let classify = service::Classify::new(batches, Arc::clone(&self.permits), self.health());
        let call_limits = (
            Duration::from_millis(self.config.classify_timeout_ms),
            self.config.classify_concurrency.max(1),
        );
        let client = self.client.clone();
        let served = service::serve(client, classify, self.health(), limits, call_limits, stop);
        if let Err(err) = served.await {
            warn!("the offpath.classify service stopped: {err}");
        }
    }

    /// Waits until every request held is settled, up to [`SHUTDOWN_GRACE`]; what is still
    /// unsettled then is redelivered (to other moderators) after its ack wait.
    async fn drain(&self) {
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        let lane = u32::try_from(INTERACTIVE_IN_FLIGHT).unwrap_or(u32::MAX);
        let settled = async {
            let bulk = self.permits.acquire_many(all).await;
            let interactive = self.lane_permits.acquire_many(lane).await;
            (bulk, interactive)
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, settled).await.is_err() {
            warn!("shutdown grace passed; unsettled requests will be redelivered");
        }
    }
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
