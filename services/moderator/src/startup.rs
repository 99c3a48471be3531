//! One moderator's life, in named steps: [`Moderator::new`] sizes it (the in-flight bound,
//! computed once) → [`Moderator::load`] loads the models and builds the stages of the line
//! ([`Line`]: each stage gets the handles it uses, nothing more) → [`Moderator::serve`]
//! wires them and runs intake, the batcher, the micro service and the backlog report
//! together until intake ends → [`Moderator::drain`] waits, up to a grace period, for the
//! requests still held to settle.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use offpath_protocol::Limits;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{info, warn};

use offpath_protocol::subject::{INTERACTIVE_STREAM, MODERATION_STREAM};

use crate::delivery::Settings;
use crate::inference::Inference;
use crate::intake::Admission;
use crate::judge::Judge;
use crate::model_reload::Reloader;
use crate::policies::{Bucket, LivePolicies};
use crate::readiness::Health;
use crate::screen::Screen;
use crate::senders::{self, SenderEvent, Senders};
use crate::settle::Settler;
use crate::work::Pending;
use crate::{
    Config, ModeratorError, batcher, cache, consumer, metrics, model_reload, pool, service,
};

/// The stages of a loaded moderator, wired by [`Moderator::serve`].
struct Line {
    js: jetstream::Context,
    limits: Limits,
    /// The bound consumer's settings: the consumer writes them, the line reads them.
    delivery: Arc<Settings>,
    admission: Arc<Admission>,
    inference: Arc<Inference>,
    reloader: Arc<Reloader>,
    /// The sender state, and its events on their way to `SENDERS` (none when off).
    senders: Arc<Senders>,
    sender_events: Option<mpsc::Receiver<SenderEvent>>,
}

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
        let max_in_flight = config.intake.max_in_flight.max(1);
        let stall_after = config.intake.stall_after.get();
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
        let line = self.load().await?;
        let result = self.serve(line, hangups, shutdown).await;
        self.drain().await;
        if result.is_ok() {
            info!("moderator stopped");
        }
        result
    }

    /// Loads the models on their inference threads and builds the stages.
    async fn load(&self) -> Result<Line, ModeratorError> {
        let config = &self.config;
        let js = jetstream::new(self.client.clone());
        let policies = Arc::new(LivePolicies::new(config)?);
        let bucket = Bucket::new(js.clone(), config.signers()?);
        let pool = Arc::new(start_pool(config).await?);
        let cache = Arc::new(cache::VerdictCache::new(
            config.cache.cache_entries,
            config.cache.cache_window.get(),
        ));
        let limits = Limits {
            max_request_bytes: config.intake.max_request_bytes,
        };
        let delivery = Arc::new(Settings::new(&config.topology));
        let (senders, sender_events, judge) = judging(config, &pool, &policies);
        let settler = Arc::new(Settler::new(
            js.clone(),
            Arc::clone(&delivery),
            config.intake.nak_delay.get(),
        ));
        let reloader = Arc::new(Reloader::new(
            Arc::clone(&pool),
            Arc::clone(&policies),
            model_reload::ModelFiles::read(&config.models),
            bucket,
        ));
        // The fleet's policies before the first request, when the bucket has a value.
        model_reload::read_bucket(&reloader).await;
        loaded(&pool, &policies, config.inference.inference_threads);
        self.health.set_loaded();
        Ok(Line {
            admission: Arc::new(Admission {
                limits,
                cache: Arc::clone(&cache),
                pool: Arc::clone(&pool),
                screen: Arc::new(Screen::new(Arc::clone(&judge))),
                judge: Arc::clone(&judge),
                settler: Arc::clone(&settler),
            }),
            inference: Arc::new(Inference {
                pool,
                health: self.health(),
                cache,
                delivery: Arc::clone(&delivery),
                judge,
                settler,
            }),
            js,
            limits,
            delivery,
            reloader,
            senders,
            sender_events,
        })
    }

    /// Runs intake, the batcher, the micro service and the backlog report together; when
    /// intake ends, the micro service and the report are told to stop, and the batcher
    /// ends once every request handed to it is processed.
    async fn serve(
        &self,
        mut line: Line,
        hangups: Option<tokio::signal::unix::Signal>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ModeratorError> {
        // Holds every request this process has taken in and not settled (bounded by the permits).
        let (batch_tx, batch_rx) = mpsc::channel(self.max_in_flight);
        // Holds what the interactive lane took in and not settled (bounded by its permits).
        let (lane_tx, lane_rx) = mpsc::channel(INTERACTIVE_IN_FLIGHT);
        let (stop_tx, stop_rx) = watch::channel(false);
        // Runs while any stage can record an event, through the drain too.
        if let Some(events) = line.sender_events.take() {
            tokio::spawn(senders::publish(line.js.clone(), events));
        }
        let batcher = self.batcher(&line.inference, batch_rx, lane_rx);
        let interactive = self.interactive(&line, lane_tx, stop_rx.clone());
        let micro = self.micro_service(&line, batch_tx.clone(), stop_rx.clone());
        let reload = Arc::clone(&line.reloader);
        let reloads = model_reload::reload_on_sighup(reload, hangups, stop_rx.clone());
        let bucket = model_reload::follow_bucket(Arc::clone(&line.reloader), stop_rx.clone());
        let follow = senders::follow(line.js.clone(), Arc::clone(&line.senders), stop_rx.clone());
        let backlog = consumer::report_backlog(line.js.clone(), stop_rx);
        let intake = self.intake(&line, batch_tx);
        let intake = async {
            let result = intake.run(shutdown).await;
            let _ = stop_tx.send(true);
            result
        };
        let (result, (), (), (), (), (), (), ()) = tokio::join!(
            intake,
            batcher,
            micro,
            backlog,
            reloads,
            bucket,
            interactive,
            follow
        );
        result
    }

    /// Pulls from the bulk lane's consumer (binding it, and again when it is lost) into
    /// `batches`.
    fn intake(&self, line: &Line, batches: mpsc::Sender<Pending>) -> consumer::Intake {
        consumer::Intake {
            js: line.js.clone(),
            config: self.config.clone(),
            admission: Arc::clone(&line.admission),
            health: self.health(),
            delivery: Arc::clone(&line.delivery),
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
        line: &Line,
        batches: mpsc::Sender<Pending>,
        mut stop: watch::Receiver<bool>,
    ) {
        let intake = consumer::Intake {
            js: line.js.clone(),
            config: self.config.clone(),
            admission: Arc::clone(&line.admission),
            health: self.health(),
            delivery: Arc::clone(&line.delivery),
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
        inference: &Arc<Inference>,
        batches: mpsc::Receiver<Pending>,
        lane: mpsc::Receiver<Pending>,
    ) -> impl Future<Output = ()> + use<> {
        let slots = batcher::Slots {
            shared: Arc::new(Semaphore::new(
                self.config.inference.inference_threads.max(1),
            )),
            reserved: Arc::new(Semaphore::new(self.config.inference.interactive_threads)),
        };
        let max_batch = self.config.inference.max_batch.max(1);
        let inference = Arc::clone(inference);
        batcher::batcher(
            move |batch, slot| Arc::clone(&inference).process(batch, slot),
            batcher::Lanes {
                interactive: lane,
                bulk: batches,
            },
            slots,
            max_batch,
            self.config.inference.max_wait.get(),
        )
    }

    /// The `offpath.classify` micro service (requests of at most `limits`) until `stop`
    /// turns true; its failure is logged (the stream keeps being served).
    async fn micro_service(
        &self,
        line: &Line,
        batches: mpsc::Sender<Pending>,
        stop: watch::Receiver<bool>,
    ) {
        let limits = line.limits;
        let screen = Arc::clone(&line.admission.screen);
        let classify =
            service::Classify::new(batches, Arc::clone(&self.permits), self.health(), screen);
        let call_limits = (
            self.config.classify.classify_timeout.get(),
            self.config.classify.classify_concurrency.max(1),
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

/// Reports the models and policies in force (the `model_info` series and a log line).
fn loaded(pool: &pool::Pool, policies: &LivePolicies, threads: usize) {
    let models = pool.models();
    metrics::model_info(&models, &policies.manifests(), 1.0);
    let (model, version) = (models.name.as_str(), models.version.as_str());
    let names: Vec<String> = policies
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
}

/// The sender state (and its outbox's far end) and the judge reading it.
fn judging(
    config: &Config,
    pool: &Arc<crate::pool::Pool>,
    policies: &Arc<LivePolicies>,
) -> (
    Arc<Senders>,
    Option<tokio::sync::mpsc::Receiver<crate::senders::SenderEvent>>,
    Arc<Judge>,
) {
    let (senders, events) =
        Senders::new(config.cache.sender_capacity, config.cache.campaign_capacity);
    let brake = crate::brake::Brake::new(config.brake.clone());
    let judge = Judge::new(
        Arc::clone(pool),
        Arc::clone(policies),
        Arc::clone(&senders),
        brake,
    );
    (senders, events, Arc::new(judge))
}
