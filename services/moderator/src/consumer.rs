//! The moderators' intake from their durable pull consumer (`moderator` on a lane's
//! stream), healed by [`offpath_jetstream::Consumer`]: it binds (re-creating a deleted
//! stream or consumer from `config.topology`), replaces silent pulls, binds again when the
//! consumer is lost, and after `intake.rebind_give_up` of failed binds the moderator gives up
//! with [`ModeratorError::Unbound`] rather than idle while looking alive. Requests held when
//! the consumer is lost keep going; their acks may fail, and JetStream redelivers them.
//!
//! What stays here is the moderator's own: a permit per request held, each message handed
//! to intake ([`Admission`]), and what the consumer's events mean to it ([`Events`]: the
//! delivery settings, metrics, `/readyz`); beside it, the backlog gauges.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::Info};
use offpath_jetstream::{Consumer, GaveUp, Hooks, PullAgain, Target, Unbound};
use offpath_protocol::subject::{INTERACTIVE_STREAM, MODERATION_STREAM, MODERATOR_CONSUMER};
use offpath_protocol::topology::Drift;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::delivery::Settings;
use crate::intake::Admission;
use crate::metrics as m;
use crate::readiness::Health;
use crate::work::Pending;
use crate::{Config, ModeratorError};

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

impl Intake {
    /// Pulls (at most `in_flight` requests held) until `shutdown` (then `Ok`) or until
    /// binding has failed for `intake.rebind_give_up` (then `Err`). Settles what it started
    /// before returning; dropping `self` closes the batcher's queue.
    pub(crate) async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ModeratorError> {
        let mut consumer = self.consumer();
        let mut side_tasks = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            // The pull is read before a permit is taken, so that its heartbeats are watched
            // while every permit is held (verdict publishes retrying through a failover,
            // say); one request waits in hand for a permit, as it would in the pull's buffer.
            let message = tokio::select! {
                () = &mut shutdown => break Ok(()),
                next = consumer.next() => match next {
                    Ok(message) => message,
                    Err(gave_up) => break Err(unbound(gave_up)),
                },
            };
            let permit = tokio::select! {
                () = &mut shutdown => break Ok(()),
                permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Ok(()),
                },
            };
            let held = self.health.hold(permit);
            self.admission
                .admit(message, held, &self.batches, &mut side_tasks)
                .await;
            while side_tasks.try_join_next().is_some() {}
        };
        info!("no more pulls; settling requests in flight");
        while side_tasks.join_next().await.is_some() {}
        result
    }

    /// The lane's self-healing consumer: at most `in_flight` (and `max_batch`) requests per
    /// pull request.
    fn consumer(&self) -> Consumer<Events> {
        let in_flight = self.in_flight.max(1);
        let target = Target {
            stream: self.stream.into(),
            consumer: MODERATOR_CONSUMER.into(),
            topology: self.config.topology.clone(),
        };
        let settings = offpath_jetstream::Settings {
            batch: Some(self.config.inference.max_batch.clamp(1, in_flight)),
            give_up_after: Some(self.config.intake.rebind_give_up.get()),
            ..Default::default()
        };
        let events = Events {
            stream: self.stream,
            health: self.reports_health.then(|| Arc::clone(&self.health)),
            delivery: Arc::clone(&self.delivery),
            in_flight,
        };
        Consumer::new(self.js.clone(), target, settings, events)
    }
}

fn unbound(gave_up: GaveUp) -> ModeratorError {
    ModeratorError::Unbound {
        waited: gave_up.waited,
        reason: gave_up.reason.to_string(),
    }
}

/// What the consumer's events mean to a moderator: the bound consumer's delivery settings
/// for the line, the `offpath_moderator_*` counters, and `/readyz` (bulk lane only).
struct Events {
    stream: &'static str,
    /// `/readyz`'s health when this lane reports to it.
    health: Option<Arc<Health>>,
    delivery: Arc<Settings>,
    in_flight: usize,
}

impl Hooks for Events {
    fn bound(&mut self, info: &Info, again: bool) {
        let config = &info.config;
        self.delivery.adopt(config.max_deliver, config.ack_wait);
        if config.max_ack_pending > 0 && self.in_flight as i64 > config.max_ack_pending {
            warn!(
                max_in_flight = self.in_flight,
                max_ack_pending = config.max_ack_pending,
                "max_in_flight exceeds the consumer's max_ack_pending"
            );
        }
        if again {
            metrics::counter!(m::CONSUMER_REBINDS).increment(1);
            info!(stream = self.stream, "consumer bound again");
        }
        if let Some(health) = &self.health {
            health.set_bound();
        }
    }

    fn unbound(&mut self, reason: &Unbound) {
        metrics::counter!(m::NATS_ERRORS, "operation" => "bind").increment(1);
        self.lost(reason);
    }

    fn lost(&mut self, reason: &Unbound) {
        if let Some(health) = &self.health {
            health.set_unbound(reason.to_string());
        }
    }

    fn pulled_again(&mut self, _why: PullAgain) {
        metrics::counter!(m::NATS_ERRORS, "operation" => "pull_again").increment(1);
    }

    fn pull_error(&mut self, _error: &async_nats::jetstream::consumer::pull::MessagesError) {
        metrics::counter!(m::NATS_ERRORS, "operation" => "pull").increment(1);
    }

    fn drift(&mut self, _drift: &Drift) {
        metrics::counter!(m::TOPOLOGY_DRIFT).increment(1);
    }
}

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

/// Publishes the consumer's backlog (`num_pending`, `num_ack_pending`: what an operator
/// scales on) every [`BACKLOG_EVERY`] until `stop` turns true. While the consumer cannot be
/// read the gauges keep their last values and `consumer_info` errors are counted.
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
