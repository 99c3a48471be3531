//! Applies verdicts from the `VERDICTS` stream. A durable pull consumer per gateway
//! instance (`transport-<tenant>-<instance>`, filtered to this tenant) remembers how far it got, so
//! a restarted gateway catches up on verdicts published while it was away. Each verdict is
//! acked after it is applied (at-least-once; applying twice changes nothing). Acks are not
//! cumulative: with `AckPolicy::All` a verdict lost on its way to the gateway (its node
//! died, a pull was replaced) was acked by the next one and never came again; the cluster
//! fault test saw it. When the stream or the consumer is gone (deleted by hand, a lost cluster
//! volume), the missing topology is created again ([`topology::ensure`]: never changing
//! what exists) and the consumer is bound again from the last verdict seen; `/readyz`
//! reports a consumer that stays unbound while NATS is up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{
    self, ErrorCode,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;
use offpath_protocol::subject::VERDICTS_STREAM;
use offpath_protocol::topology;
use offpath_protocol::{Verdict, decode_versioned};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::hub::{Hub, now_ms};
use crate::metrics as m;

/// Largest verdict payload read.
const MAX_VERDICT_BYTES: usize = 64 * 1024;
/// Pause before binding the consumer again after NATS failed.
const RETRY: Duration = Duration::from_secs(1);
/// How long a delivered verdict may stay unacked before it is delivered again.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long a bind waits for the consumer's lookup: while a cluster elects a new leader,
/// API requests go unanswered until the context's timeout; binding again sooner finds it.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one pull request waits at the server; a new one follows at once.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// The server's idle heartbeat on a pull; two missed and the consumer is bound again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
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
/// or consumer by binding again.
pub(crate) async fn consume(
    js: jetstream::Context,
    hub: Arc<Hub>,
    binding: Arc<Binding>,
    mut stop: watch::Receiver<bool>,
) {
    // A second's margin for clock granularity; applying a verdict twice is harmless.
    let margin = Duration::from_secs(1);
    let mut since = time::OffsetDateTime::now_utc() - margin;
    let mut first_bind = true;
    loop {
        let mut last_seen = None;
        let run = run_once(&js, &hub, since, &binding, &mut first_bind, &mut last_seen);
        let result = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            result = run => result,
        };
        if let Some(seen) = last_seen {
            since = seen - margin;
        }
        metrics::counter!(m::NATS_ERRORS, "operation" => "verdicts").increment(1);
        warn!("verdict consumer: {result}; binding again in {RETRY:?}");
        binding.set_unbound(Some(result));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Binds this gateway's consumer; when that fails (a deleted `VERDICTS` stream, say),
/// creates whatever of the topology is missing and tries once more.
async fn bind(
    js: &jetstream::Context,
    hub: &Hub,
    since: time::OffsetDateTime,
) -> Result<PullConsumer, String> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, lookup(js, hub, since)).await;
    let found = found.unwrap_or_else(|_| {
        Err(Lookup::Failed(format!(
            "looking up the consumer: no answer within {LOOKUP_TIMEOUT:?}"
        )))
    });
    match found {
        Ok(consumer) => Ok(consumer),
        Err(Lookup::Failed(reason)) => Err(reason),
        Err(Lookup::Missing(missing)) => {
            info!("{missing}; creating what is missing of the topology");
            ensure_topology(js, &hub.config().topology)
                .await
                .map_err(|err| format!("{missing}; re-creating the topology: {err}"))?;
            lookup(js, hub, since).await.map_err(Lookup::reason)
        }
    }
}

/// Why the consumer could not be bound.
enum Lookup {
    /// The stream does not exist: create the topology.
    Missing(String),
    /// Anything else (a timeout while a node fails over, say): bind again later; creating
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

async fn lookup(
    js: &jetstream::Context,
    hub: &Hub,
    since: time::OffsetDateTime,
) -> Result<PullConsumer, Lookup> {
    let config = hub.config();
    let stream = js.get_stream(VERDICTS_STREAM).await.map_err(|e| {
        let reason = format!("stream {VERDICTS_STREAM}: {e}");
        match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Lookup::Missing(reason)
            }
            _ => Lookup::Failed(reason),
        }
    })?;
    let consumer_config = consumer_config(&config.tenant, &config.instance, since);
    stream
        .get_or_create_consumer(
            &consumer_name(&config.tenant, &config.instance),
            consumer_config,
        )
        .await
        .map_err(|e| Lookup::Failed(format!("consumer: {e}")))
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

async fn run_once(
    js: &jetstream::Context,
    hub: &Hub,
    since: time::OffsetDateTime,
    binding: &Binding,
    first_bind: &mut bool,
    last_seen: &mut Option<time::OffsetDateTime>,
) -> String {
    let mut consumer = match bind(js, hub, since).await {
        Ok(consumer) => consumer,
        Err(err) => return err,
    };
    if std::mem::take(first_bind) {
        warn_if_shared(&mut consumer).await;
        let policy = consumer.cached_info().config.ack_policy;
        if policy != AckPolicy::Explicit {
            // Made by an older gateway with the same --instance: its acks are cumulative,
            // so a verdict lost on the way is acked by the next one. It is removed after
            // an hour unused; an operator can delete it now.
            metrics::counter!(m::TOPOLOGY_DRIFT, "setting" => "verdict_ack_policy").increment(1);
            warn!(
                consumer = ?consumer.cached_info().name,
                "the verdict consumer has ack policy {policy:?}, not Explicit: a verdict lost \
                 on its way here would not come again; delete the consumer to have it made anew"
            );
        }
    }
    // A missed heartbeat ends the pull, and the consumer is bound again: the pull request
    // may have died with a consumer leader, and async-nats would only pull again when it
    // expired.
    let pull = consumer
        .stream()
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages();
    let mut messages = match pull.await {
        Ok(messages) => messages,
        Err(err) => return format!("pull: {err}"),
    };
    binding.set_bound();
    let config = hub.config();
    info!(consumer = %consumer_name(&config.tenant, &config.instance), "applying verdicts");
    match apply_pulled(hub, &mut messages, last_seen).await {
        None => "the verdict stream ended".to_string(),
        Some(err) => format!("pull: {err}"),
    }
}

/// Applies each verdict of one pull until it fails (`None`: it ended), and hands it to
/// [`acks`] to be acked there.
async fn apply_pulled(
    hub: &Hub,
    messages: &mut pull::Stream,
    last_seen: &mut Option<time::OffsetDateTime>,
) -> Option<pull::MessagesError> {
    // An ack is a publish, and a publish waits for room in the client's command channel,
    // which the outbox fills while NATS is away: acking here would hold up applying the
    // verdicts already received. A bound of a few pulls' worth; beyond it (NATS gone for
    // long) a verdict goes unacked, is counted, and comes again after ack_wait (applying
    // twice is harmless).
    let (to_ack, acking) = tokio::sync::mpsc::channel(ACKS_QUEUED);
    // Dropping the set aborts the ack task: the acks of a pull end with it (what was not
    // acked comes again).
    let mut acker = tokio::task::JoinSet::new();
    acker.spawn(acks(acking));
    loop {
        let message = match messages.next().await {
            None => return None,
            Some(Err(err)) => return Some(err),
            Some(Ok(message)) => message,
        };
        if let Ok(info) = message.info() {
            *last_seen = Some(info.published);
        }
        apply(hub, &message);
        if to_ack.try_send(message).is_err() {
            metrics::counter!(m::NATS_ERRORS, "operation" => "ack_queue_full").increment(1);
        }
        // Verdicts come in batches; applying a whole batch in one go would hold this
        // worker thread while sockets wait to fan out. Let them in between verdicts.
        tokio::task::yield_now().await;
    }
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
/// gateway has sent any) means two gateways share one `--instance`: each would get only
/// part of the verdicts. Say so loudly; the operator must give each its own.
async fn warn_if_shared(consumer: &mut PullConsumer) {
    let waiting = match consumer.info().await {
        Ok(info) => info.num_waiting,
        Err(_) => return,
    };
    if waiting > 0 {
        metrics::counter!(m::VERDICTS_SHARED).increment(1);
        warn!(
            consumer = ?consumer.cached_info().name,
            waiting,
            "another process is already pulling this verdict consumer: two gateways share \
             one --instance and will each apply only part of the verdicts; give each its own"
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
