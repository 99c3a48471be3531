//! The moderators' durable pull consumer: binding it (re-creating a deleted `MODERATION`
//! stream or `moderator` consumer with `topology::ensure`), pulling requests from it, and
//! binding again, with a backoff, when it is lost. A moderator that cannot bind for
//! `rebind_give_up_ms` gives up with [`ModeratorError::Unbound`] rather than idle while
//! looking alive. Requests held when the consumer is lost keep going; their acks may fail,
//! and JetStream redelivers them.
//!
//! A pull request waits at the consumer's leader. When that leader dies, the request dies
//! with it and nothing tells the client: async-nats would only pull again when the request
//! expires. The server's idle heartbeats stop, so two missed heartbeats start a new pull on
//! the same consumer at once ([`Pulls`]). The old pull is still read for a while: a missed
//! heartbeat is also what a moderator frozen for a while (SIGSTOP, a long GC-like
//! pause of the host) sees first when it wakes, before it has read what the server sent it
//! meanwhile, and dropping that pull would leave those requests waiting out `ack_wait`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::context::{
    ConsumerInfoError, ConsumerInfoErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::{self, ErrorCode, consumer::PullConsumer};
use futures::{FutureExt, StreamExt};
use offpath_protocol::subject::{INTERACTIVE_STREAM, MODERATION_STREAM, MODERATOR_CONSUMER};
use offpath_protocol::topology;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::delivery::Settings;
use crate::intake::Admission;
use crate::metrics as m;
use crate::readiness::Health;
use crate::work::Pending;
use crate::{Config, ModeratorError};

/// First wait between bind attempts; doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between bind attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The server's idle heartbeat on a pull. Two missed in a row (async-nats's rule) and a new
/// pull starts: the request waited at a consumer leader that died, or at its server.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long one pull request waits at the server; a new one follows at once. Also the
/// longest a lost request goes unnoticed if heartbeats were somehow still coming.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// How long a replaced pull is still read: its last request expires within
/// [`PULL_EXPIRES`], and what the server sent before that arrives well within two heartbeats.
const RETIRE_AFTER: Duration = Duration::from_secs(14);
/// How long pulls may find no consumer leader to answer them ("no responders") before the
/// consumer is looked up and bound again. While a cluster fails over, the consumer's new
/// leader answers pulls within seconds, while lookups (JetStream API requests) go unanswered
/// until a meta leader is elected too (seen: 12 s of lookups timing out). A deleted
/// consumer answers the same way for good, and its waiting pulls hear "consumer deleted".
const LEADERLESS_FOR: Duration = Duration::from_secs(10);
/// The pause between pulls that no leader answered.
const LEADERLESS_PAUSE: Duration = Duration::from_millis(250);
/// How long a lookup of the consumer may take: while a cluster elects a new leader, API
/// requests go unanswered until the context's timeout (10 s); trying again sooner finds it.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the backlog gauges are read from the consumer: a scrape interval's order, and
/// one small request per moderator.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// How to bind one lane's consumer, and what its intake feeds.
pub(crate) struct Intake {
    pub(crate) js: jetstream::Context,
    pub(crate) config: Config,
    /// What the lane's messages go to.
    pub(crate) admission: Arc<Admission>,
    /// Told whether the consumer is bound (bulk lane only: `reports_health`).
    pub(crate) health: Arc<Health>,
    /// Re-read at every (re-)bind.
    pub(crate) delivery: Arc<Settings>,
    /// The lane's stream (`MODERATION` or `MODERATION_INTERACTIVE`); the consumer is
    /// `moderator` on either.
    pub(crate) stream: &'static str,
    /// Requests this lane may hold at once (the size of `permits`).
    pub(crate) in_flight: usize,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) batches: mpsc::Sender<Pending>,
    /// Whether binding and losing this consumer shows on `/readyz` (the bulk lane: without
    /// it nothing is moderated; the interactive lane's state is in the logs and counters).
    pub(crate) reports_health: bool,
}

/// Why pulling stopped.
enum End {
    Shutdown,
    Lost(String),
}

/// Why the consumer could not be looked up.
enum Lookup {
    /// The stream or the consumer does not exist: create it.
    Missing(String),
    /// Anything else (a timeout while a node fails over, say): try again later; creating
    /// the topology then would only wait for more timeouts.
    Failed(String),
}

impl Lookup {
    fn reason(self) -> String {
        match self {
            Lookup::Missing(reason) | Lookup::Failed(reason) => reason,
        }
    }
}

/// The pulls on one bound consumer: the current one and, for [`RETIRE_AFTER`] after each
/// missed heartbeat, the one it replaced. A missed heartbeat is also what a moderator thawed
/// after a freeze sees before it has read what the server sent it meanwhile, so a replaced
/// pull is read on (its own errors ignored) until its deadline; then what it already holds
/// is taken and it is dropped. Heartbeats are missed at most every 4 s, so at most four
/// pulls retire at once.
struct Pulls {
    consumer: PullConsumer,
    current: pull::Stream,
    retiring: Vec<(pull::Stream, Instant)>,
}

/// What [`Pulls::next`] read.
enum Pulled {
    Message(Box<async_nats::jetstream::Message>),
    /// The current pull missed its heartbeats (a new pull has started).
    Silent,
    Error(pull::MessagesError),
    Ended,
}

impl Intake {
    fn max_in_flight(&self) -> usize {
        self.in_flight.max(1)
    }

    fn set_bound(&self) {
        if self.reports_health {
            self.health.set_bound();
        }
    }

    fn set_unbound(&self, reason: String) {
        if self.reports_health {
            self.health.set_unbound(reason);
        }
    }

    /// Binds, pulls and binds again after every loss until `shutdown` (then `Ok`) or until
    /// binding has failed for `rebind_give_up_ms` (then `Err`). Settles what it started
    /// before returning; dropping `self` closes the batcher's queue.
    pub(crate) async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ModeratorError> {
        let mut side_tasks = JoinSet::new();
        tokio::pin!(shutdown);
        let mut rebind = false;
        let result = loop {
            let mut pulls = tokio::select! {
                () = &mut shutdown => break Ok(()),
                bound = self.bind_with_retry() => match bound {
                    Ok(pulls) => pulls,
                    Err(err) => break Err(err),
                },
            };
            if rebind {
                metrics::counter!(m::CONSUMER_REBINDS).increment(1);
                info!(stream = self.stream, "consumer bound again");
            }
            self.set_bound();
            match self
                .pull(&mut pulls, &mut side_tasks, shutdown.as_mut())
                .await
            {
                End::Shutdown => break Ok(()),
                End::Lost(reason) => {
                    warn!(
                        stream = self.stream,
                        "consumer lost, binding again: {reason}"
                    );
                    self.set_unbound(reason);
                    rebind = true;
                }
            }
        };
        info!("no more pulls; settling requests in flight");
        while side_tasks.join_next().await.is_some() {}
        result
    }

    /// Binds, retrying with a backoff; gives up after `rebind_give_up_ms` of failures.
    async fn bind_with_retry(&self) -> Result<Pulls, ModeratorError> {
        let started = Instant::now();
        let give_up = self.config.intake.rebind_give_up.get();
        let mut backoff = BACKOFF_MIN;
        loop {
            let reason = match self.bind().await {
                Ok(messages) => return Ok(messages),
                Err(reason) => reason,
            };
            metrics::counter!(m::NATS_ERRORS, "operation" => "bind").increment(1);
            self.set_unbound(reason.clone());
            let waited = started.elapsed();
            if waited >= give_up {
                return Err(ModeratorError::Unbound { waited, reason });
            }
            warn!("binding the consumer failed, retrying in {backoff:?}: {reason}");
            tokio::time::sleep(backoff.min(give_up - waited)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Looks the consumer up (creating whatever of the topology is missing when it is not
    /// there), reads its settings and starts a continuous pull.
    async fn bind(&self) -> Result<Pulls, String> {
        let consumer = match self.lookup().await {
            Ok(consumer) => consumer,
            Err(Lookup::Failed(reason)) => return Err(reason),
            Err(Lookup::Missing(missing)) => {
                info!("{missing}; creating what is missing of the topology");
                let drift = topology::ensure(&self.js, &self.config.topology)
                    .await
                    .map_err(|e| e.to_string())?;
                for drift in drift {
                    metrics::counter!(m::TOPOLOGY_DRIFT).increment(1);
                    warn!("topology drift: {drift}");
                }
                self.lookup().await.map_err(Lookup::reason)?
            }
        };
        let config = &consumer.cached_info().config;
        self.delivery.adopt(config.max_deliver, config.ack_wait);
        let max_in_flight = self.max_in_flight();
        if config.max_ack_pending > 0 && max_in_flight as i64 > config.max_ack_pending {
            warn!(
                max_in_flight,
                max_ack_pending = config.max_ack_pending,
                "max_in_flight exceeds the consumer's max_ack_pending"
            );
        }
        let current = self.start_pull(&consumer).await?;
        Ok(Pulls::new(consumer, current))
    }

    /// A continuous pull on `consumer`.
    async fn start_pull(&self, consumer: &PullConsumer) -> Result<pull::Stream, String> {
        consumer
            .stream()
            .max_messages_per_batch(
                self.config
                    .inference
                    .max_batch
                    .clamp(1, self.max_in_flight()),
            )
            .expires(PULL_EXPIRES)
            .heartbeat(HEARTBEAT)
            .messages()
            .await
            .map_err(|e| format!("starting the pull: {e}"))
    }

    /// The consumer, if it can be looked up within [`LOOKUP_TIMEOUT`].
    async fn lookup(&self) -> Result<PullConsumer, Lookup> {
        tokio::time::timeout(LOOKUP_TIMEOUT, self.lookup_unbounded())
            .await
            .unwrap_or_else(|_| {
                Err(Lookup::Failed(format!(
                    "looking up the consumer: no answer within {LOOKUP_TIMEOUT:?}"
                )))
            })
    }

    async fn lookup_unbounded(&self) -> Result<PullConsumer, Lookup> {
        let name = self.stream;
        let stream = self.js.get_stream(name).await.map_err(|e| {
            let reason = format!("stream {name}: {e}");
            match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Lookup::Missing(reason)
                }
                _ => Lookup::Failed(reason),
            }
        })?;
        stream.get_consumer(MODERATOR_CONSUMER).await.map_err(|e| {
            let reason = format!("consumer {name}/{MODERATOR_CONSUMER}: {e}");
            let kind = e.downcast_ref::<ConsumerInfoError>().map(|e| e.kind());
            match kind {
                Some(ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound) => {
                    Lookup::Missing(reason)
                }
                Some(ConsumerInfoErrorKind::JetStream(j))
                    if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND =>
                {
                    Lookup::Missing(reason)
                }
                _ => Lookup::Failed(reason),
            }
        })
    }

    /// Pulls (at most `max_in_flight` requests held) until shutdown or the consumer is lost.
    async fn pull(
        &self,
        pulls: &mut Pulls,
        side_tasks: &mut JoinSet<()>,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> End {
        // A run of pulls no consumer leader answered: since when, and the latest.
        let mut leaderless: Option<(Instant, Instant)> = None;
        loop {
            // The pull is read before a permit is taken, so that its heartbeats are watched
            // while every permit is held (verdict publishes retrying through a failover,
            // say); one request waits in hand for a permit, as it would in the pull's buffer.
            let next = tokio::select! {
                () = &mut shutdown => return End::Shutdown,
                next = pulls.next() => next,
            };
            match next {
                Pulled::Message(message) => {
                    leaderless = None;
                    let permit = tokio::select! {
                        () = &mut shutdown => return End::Shutdown,
                        permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return End::Shutdown,
                        },
                    };
                    let held = self.health.hold(permit);
                    self.admission
                        .admit(*message, held, &self.batches, side_tasks)
                        .await
                }
                Pulled::Silent => {
                    metrics::counter!(m::NATS_ERRORS, "operation" => "pull_again").increment(1);
                    warn!("pull missed its heartbeats; pulling again");
                    match self.start_pull(&pulls.consumer).await {
                        Ok(fresh) => pulls.replace(fresh),
                        Err(reason) => return End::Lost(reason),
                    }
                }
                Pulled::Error(err)
                    if err.kind() == MessagesErrorKind::NoResponders
                        && still_leaderless(&mut leaderless) =>
                {
                    metrics::counter!(m::NATS_ERRORS, "operation" => "pull_again").increment(1);
                    debug!("no consumer leader answers the pull yet; pulling again");
                    tokio::select! {
                        () = &mut shutdown => return End::Shutdown,
                        () = tokio::time::sleep(LEADERLESS_PAUSE) => {}
                    }
                    match self.start_pull(&pulls.consumer).await {
                        Ok(fresh) => pulls.current = fresh,
                        Err(reason) => return End::Lost(reason),
                    }
                }
                Pulled::Error(err) => {
                    metrics::counter!(m::NATS_ERRORS, "operation" => "pull").increment(1);
                    warn!("pulling requests: {err}");
                    if let Some(reason) = self.lost(&err).await {
                        return End::Lost(reason);
                    }
                }
                Pulled::Ended => return End::Lost("the pull ended".into()),
            }
            while side_tasks.try_join_next().is_some() {}
        }
    }

    /// Whether a pull error means the consumer is gone: said so, or it cannot be looked up.
    async fn lost(&self, err: &pull::MessagesError) -> Option<String> {
        match err.kind() {
            MessagesErrorKind::ConsumerDeleted
            | MessagesErrorKind::NoResponders
            | MessagesErrorKind::PushBasedConsumer
            | MessagesErrorKind::RequestLimitExceeded => Some(err.to_string()),
            _ => self.lookup().await.err().map(Lookup::reason),
        }
    }
}

impl Pulls {
    fn new(consumer: PullConsumer, current: pull::Stream) -> Self {
        Self {
            consumer,
            current,
            retiring: Vec::new(),
        }
    }

    /// The next message from any pull, retiring ones first (their requests are older).
    async fn next(&mut self) -> Pulled {
        loop {
            let now = Instant::now();
            // Past its deadline: take what a retiring pull already holds, then drop it.
            while let Some(i) = self.retiring.iter().position(|(_, until)| *until <= now) {
                match self.retiring[i].0.next().now_or_never() {
                    Some(Some(Ok(message))) => return Pulled::Message(Box::new(message)),
                    _ => drop(self.retiring.swap_remove(i)),
                }
            }
            let first_deadline = self.retiring.iter().map(|(_, until)| *until).min();
            let deadline = async move {
                match first_deadline {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            let retiring = &mut self.retiring;
            let from_retiring = std::future::poll_fn(|cx| {
                let mut i = 0;
                while i < retiring.len() {
                    match retiring[i].0.poll_next_unpin(cx) {
                        Poll::Ready(Some(Ok(message))) => return Poll::Ready(message),
                        // Polled again: each error took an item or reset a timer, and only
                        // a pending poll leaves a waker behind.
                        Poll::Ready(Some(Err(err))) => debug!("retiring pull: {err}"),
                        Poll::Ready(None) => drop(retiring.swap_remove(i)),
                        Poll::Pending => i += 1,
                    }
                }
                Poll::Pending
            });
            tokio::select! {
                biased;
                message = from_retiring => return Pulled::Message(Box::new(message)),
                item = self.current.next() => return Self::read(item),
                () = deadline => {}
            }
        }
    }

    fn read(item: Option<Result<async_nats::jetstream::Message, pull::MessagesError>>) -> Pulled {
        match item {
            Some(Ok(message)) => Pulled::Message(Box::new(message)),
            Some(Err(err)) if err.kind() == MessagesErrorKind::MissingHeartbeat => Pulled::Silent,
            Some(Err(err)) => Pulled::Error(err),
            None => Pulled::Ended,
        }
    }

    /// `fresh` becomes the current pull; the one it replaces retires.
    fn replace(&mut self, fresh: pull::Stream) {
        let old = std::mem::replace(&mut self.current, fresh);
        self.retiring.push((old, Instant::now() + RETIRE_AFTER));
    }
}

/// Whether pulls answered "no responders" are still within [`LEADERLESS_FOR`] of the first
/// of a run (`state`: its start and the latest; a run ends after two heartbeats without
/// one, so an earlier failover does not shorten the next one's grace).
fn still_leaderless(state: &mut Option<(Instant, Instant)>) -> bool {
    let now = Instant::now();
    let since = match *state {
        Some((since, last)) if now.duration_since(last) < 2 * HEARTBEAT => since,
        _ => now,
    };
    *state = Some((since, now));
    now.duration_since(since) < LEADERLESS_FOR
}

/// Publishes the consumer's backlog (`num_pending`, `num_ack_pending`: what an operator
/// scales on) every [`BACKLOG_EVERY`] until `stop` turns true. While the consumer cannot be
/// read the gauges keep their last values and `consumer_info` errors are counted.
/// The `moderator` consumer's info on `stream`.
async fn consumer_info(
    js: &jetstream::Context,
    stream: &str,
) -> Result<async_nats::jetstream::consumer::Info, async_nats::Error> {
    let stream = js.get_stream(stream).await?;
    stream
        .consumer_info(MODERATOR_CONSUMER)
        .await
        .map_err(async_nats::Error::from)
}

pub(crate) async fn report_backlog(js: jetstream::Context, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(BACKLOG_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = ticks.tick() => {}
        }
        match consumer_info(&js, MODERATION_STREAM).await {
            Ok(info) => {
                metrics::gauge!(m::CONSUMER_PENDING).set(info.num_pending as f64);
                metrics::gauge!(m::CONSUMER_ACK_PENDING).set(info.num_ack_pending as f64);
            }
            Err(err) => {
                metrics::counter!(m::NATS_ERRORS, "operation" => "consumer_info").increment(1);
                debug!("reading the consumer's backlog: {err}");
            }
        }
        match consumer_info(&js, INTERACTIVE_STREAM).await {
            Ok(info) => metrics::gauge!(m::INTERACTIVE_PENDING).set(info.num_pending as f64),
            Err(err) => debug!("reading the interactive lane's backlog: {err}"),
        }
    }
}
