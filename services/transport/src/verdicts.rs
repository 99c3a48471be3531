//! Applies verdicts from the `VERDICTS` stream. A durable pull consumer per gateway
//! instance (`transport-<tenant>-<instance>`, filtered to this tenant) remembers how far it
//! got, so a restarted gateway catches up on verdicts published while it was away. Each
//! verdict is acked after it is applied (at-least-once; applying twice changes nothing).
//! Acks are not cumulative: with `AckPolicy::All` a verdict lost on its way to the gateway
//! (its node died, a pull was replaced) was acked by the next one and never came again; the
//! cluster fault test saw it.
//!
//! Binding and healing are [`offpath_jetstream::Consumer`]'s: when the stream or the
//! consumer is gone (deleted by hand, a lost cluster volume), the missing topology is created
//! again ([`topology::ensure`]: never changing what exists) and the consumer is bound again
//! from the last verdict seen; a pull whose consumer leader died is replaced. What stays here
//! is the gateway's own: what a verdict does to the hub, acking, and what the consumer's
//! events mean to `/readyz` and the metrics ([`Binding`]), which report a consumer that stays
//! unbound while NATS is up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{self, AckPolicy, DeliverPolicy, pull},
};
use offpath_jetstream::{Consumer, Hooks, PullAgain, Settings, Target, Unbound};
use offpath_protocol::subject::VERDICTS_STREAM;
use offpath_protocol::topology::{self, Drift};
use offpath_protocol::{Verdict, decode_versioned};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::hub::{Hub, now_ms};
use crate::metrics as m;

/// Largest verdict payload read.
const MAX_VERDICT_BYTES: usize = 64 * 1024;
/// How long a delivered verdict may stay unacked before it is delivered again.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How far before the gateway's start, or the last verdict seen, a re-created consumer
/// starts: a second's margin for clock granularity; applying a verdict twice is harmless.
const MARGIN: Duration = Duration::from_secs(1);
/// A durable consumer nobody pulls from for this long is removed by the server (a
/// gateway instance that is gone for good; the default instance name is new at every
/// start, so its consumers are left behind by each restart).
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(3600);
/// How long the consumer may stay unbound while NATS is connected before `/readyz` says so
/// (binding takes a few round trips; a re-created stream a few more).
const UNBOUND_GRACE: Duration = Duration::from_secs(10);

/// Whether verdicts are flowing: the consumer's state for `/readyz` and metrics.
#[derive(Debug)]
pub(crate) struct Binding {
    bound: AtomicBool,
    /// When `bound` last changed, ms since the Unix epoch.
    since_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for Binding {
    fn default() -> Self {
        metrics::gauge!(m::VERDICTS_BOUND).set(0.0);
        Self {
            bound: AtomicBool::new(false),
            since_ms: AtomicU64::new(now_ms()),
            last_error: Mutex::new(None),
        }
    }
}

impl Binding {
    fn set_bound(&self) {
        self.bound.store(true, Ordering::Relaxed);
        self.since_ms.store(now_ms(), Ordering::Relaxed);
        metrics::gauge!(m::VERDICTS_BOUND).set(1.0);
    }

    fn set_unbound(&self, error: Option<String>) {
        if self.bound.swap(false, Ordering::Relaxed) {
            self.since_ms.store(now_ms(), Ordering::Relaxed);
        }
        metrics::gauge!(m::VERDICTS_BOUND).set(0.0);
        if let Some(error) = error {
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        }
    }

    /// Whether the consumer is bound now.
    pub(crate) fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Relaxed)
    }

    /// `Err` with the reason when the consumer has been unbound for longer than the grace.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if self.is_bound() {
            return Ok(());
        }
        let unbound_ms = now_ms().saturating_sub(self.since_ms.load(Ordering::Relaxed));
        if unbound_ms <= UNBOUND_GRACE.as_millis() as u64 {
            return Ok(());
        }
        let error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        Err(format!(
            "verdict consumer not bound for {unbound_ms} ms (last error: {})",
            error.as_deref().unwrap_or("none")
        ))
    }
}

/// Name of the durable consumer of gateway `instance` of `tenant`:
/// `transport-<tenant>-<instance>`, the name the NATS permissions of a transport pinned to
/// its instance allow (two tenants' gateways with one instance name stay apart too).
pub(crate) fn consumer_name(tenant: &str, instance: &str) -> String {
    offpath_protocol::permissions::transport_consumer(tenant, instance)
}

/// The consumer's settings. A new consumer starts with the verdicts published since
/// `since` (the gateway's start, or the last verdict seen when it is created again: no
/// verdict of a message it accepted is missed); a restarted gateway with the same
/// `--instance` resumes where its consumer stopped. The filter is written in the stream's
/// own shape (`offpath.verdict.*.*`): nats-server 2.9 refuses `offpath.verdict.<tenant>.>`
/// on it as "not a valid subset of the interest subjects" (10093).
pub(crate) fn consumer_config(
    tenant: &str,
    instance: &str,
    since: time::OffsetDateTime,
) -> pull::Config {
    pull::Config {
        durable_name: Some(consumer_name(tenant, instance)),
        description: Some("offpath transport: verdicts to apply".into()),
        filter_subject: offpath_protocol::permissions::transport_filter(tenant),
        deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
        ack_policy: AckPolicy::Explicit,
        // A verdict lost on its way here comes again after this long.
        ack_wait: ACK_WAIT,
        max_ack_pending: 10_000,
        inactive_threshold: INACTIVE_THRESHOLD,
        ..Default::default()
    }
}

/// Consumes and applies verdicts until `stop`; survives NATS outages and a deleted stream
/// or consumer by binding again ([`offpath_jetstream::Consumer`]). Each verdict is applied
/// at once and queued to be acked by a task of its own.
pub(crate) async fn consume(
    js: jetstream::Context,
    hub: Arc<Hub>,
    binding: Arc<Binding>,
    mut stop: watch::Receiver<bool>,
) {
    let config = hub.config();
    let target = Target {
        stream: VERDICTS_STREAM.into(),
        consumer: consumer_name(&config.tenant, &config.instance),
        topology: config.topology.clone(),
    };
    let events = Events {
        hub: Arc::clone(&hub),
        binding,
        since: time::OffsetDateTime::now_utc() - MARGIN,
    };
    let mut consumer = Consumer::new(js, target, Settings::default(), events);
    // An ack is a publish, and a publish waits for room in the client's command channel,
    // which the outbox fills while NATS is away: acking here would hold up applying the
    // verdicts already received. A bound of a few pulls' worth; beyond it (NATS gone for
    // long) a verdict goes unacked, is counted, and comes again after ack_wait (applying
    // twice is harmless). Dropping the set at `stop` aborts the ack task (what was not acked
    // comes again).
    let (to_ack, acking) = tokio::sync::mpsc::channel(ACKS_QUEUED);
    let mut acker = tokio::task::JoinSet::new();
    acker.spawn(acks(acking));
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            next = consumer.next() => next,
        };
        let message = match next {
            Ok(message) => message,
            // Not expected: the transport never gives up binding (`/readyz` tells instead).
            Err(gave_up) => return warn!("verdict consumer: {gave_up}"),
        };
        if let Ok(info) = message.info() {
            consumer.hooks_mut().since = info.published - MARGIN;
        }
        apply(&hub, &message);
        if to_ack.try_send(message).is_err() {
            metrics::counter!(m::NATS_ERRORS, "operation" => "ack_queue_full").increment(1);
        }
        // Verdicts come in batches; applying a whole batch in one go would hold this
        // worker thread while sockets wait to fan out. Let them in between verdicts.
        tokio::task::yield_now().await;
    }
}

/// What the verdict consumer's events mean to the gateway: [`Binding`] (`/readyz`, the
/// bound gauge), the `verdicts` NATS errors, topology drift, and the checks of a first bind.
struct Events {
    hub: Arc<Hub>,
    binding: Arc<Binding>,
    /// Where a consumer created now starts: the gateway's start, then the last verdict seen
    /// (each less [`MARGIN`]): no verdict of a message it accepted is missed.
    since: time::OffsetDateTime,
}

impl Hooks for Events {
    fn create_config(&mut self) -> Option<pull::Config> {
        let config = self.hub.config();
        Some(consumer_config(
            &config.tenant,
            &config.instance,
            self.since,
        ))
    }

    fn bound(&mut self, info: &consumer::Info, again: bool) {
        if !again {
            warn_if_shared(info);
            warn_if_cumulative(info);
        }
        self.binding.set_bound();
        info!(consumer = %info.name, "applying verdicts");
    }

    fn unbound(&mut self, reason: &Unbound) {
        self.lost(reason);
    }

    fn lost(&mut self, reason: &Unbound) {
        metrics::counter!(m::NATS_ERRORS, "operation" => "verdicts").increment(1);
        self.binding.set_unbound(Some(reason.to_string()));
    }

    fn pulled_again(&mut self, _why: PullAgain) {
        metrics::counter!(m::NATS_ERRORS, "operation" => "verdicts").increment(1);
    }

    fn pull_error(&mut self, _error: &pull::MessagesError) {
        metrics::counter!(m::NATS_ERRORS, "operation" => "verdicts").increment(1);
    }

    fn drift(&mut self, drift: &Drift) {
        metrics::counter!(m::TOPOLOGY_DRIFT, "setting" => drift.setting).increment(1);
    }
}

/// Creates whatever of the topology is missing (never changing what exists); logs and
/// counts each setting of what exists that differs from `config`.
pub(crate) async fn ensure_topology(
    js: &jetstream::Context,
    config: &topology::TopologyConfig,
) -> Result<(), topology::TopologyError> {
    for difference in topology::ensure(js, config).await? {
        metrics::counter!(m::TOPOLOGY_DRIFT, "setting" => difference.setting).increment(1);
        warn!("{difference}");
    }
    Ok(())
}

fn apply(hub: &Hub, message: &jetstream::Message) {
    match decode_versioned::<Verdict>(&message.payload, MAX_VERDICT_BYTES) {
        Ok(verdict) if verdict.tenant == hub.config().tenant => {
            // A refused (forged) verdict must not make a stalled flow look alive.
            if hub.apply_verdict(verdict) {
                metrics::gauge!(m::LAST_VERDICT).set(now_ms() as f64 / 1000.0);
            }
        }
        Ok(_) => metrics::counter!(m::VERDICTS_IGNORED, "reason" => "other_tenant").increment(1),
        Err(err) => {
            metrics::counter!(m::VERDICTS_IGNORED, "reason" => "malformed").increment(1);
            warn!(subject = %message.subject, "ignoring a malformed verdict: {err}");
        }
    }
}

/// Another process already pulling this consumer (a pull request waiting before this
/// gateway has sent any: `info` is read before this gateway pulls) means two gateways share
/// one `--instance`: each would get only part of the verdicts. Say so loudly; the operator
/// must give each its own.
fn warn_if_shared(info: &consumer::Info) {
    let waiting = info.num_waiting;
    if waiting > 0 {
        metrics::counter!(m::VERDICTS_SHARED).increment(1);
        warn!(
            consumer = ?info.name,
            waiting,
            "another process is already pulling this verdict consumer: two gateways share \
             one --instance and will each apply only part of the verdicts; give each its own"
        );
    }
}

/// A consumer made by an older gateway with the same `--instance` may ack cumulatively, so
/// a verdict lost on the way would be acked by the next one. It is removed after an hour
/// unused; an operator can delete it now.
fn warn_if_cumulative(info: &consumer::Info) {
    let policy = info.config.ack_policy;
    if policy != AckPolicy::Explicit {
        metrics::counter!(m::TOPOLOGY_DRIFT, "setting" => "verdict_ack_policy").increment(1);
        warn!(
            consumer = ?info.name,
            "the verdict consumer has ack policy {policy:?}, not Explicit: a verdict lost \
             on its way here would not come again; delete the consumer to have it made anew"
        );
    }
}

/// How many applied verdicts may wait for their ack.
const ACKS_QUEUED: usize = 1024;

/// Acks applied verdicts, in order, until the pull that applied them ends.
async fn acks(mut applied: tokio::sync::mpsc::Receiver<jetstream::Message>) {
    while let Some(message) = applied.recv().await {
        ack(&message).await;
    }
}

async fn ack(message: &jetstream::Message) {
    if let Err(err) = message.ack().await {
        metrics::counter!(m::NATS_ERRORS, "operation" => "ack").increment(1);
        warn!("acking verdicts (they will come again; applying twice is harmless): {err}");
    }
}
