//! Applies verdicts from the `VERDICTS` stream. A durable pull consumer per gateway
//! instance (`transport-<instance>`, filtered to this tenant) remembers how far it got, so
//! a restarted gateway catches up on verdicts published while it was away. Verdicts are
//! acked after they are applied, cumulatively (at-least-once; applying twice changes
//! nothing).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;
use offpath_protocol::subject::{VERDICT_PREFIX, VERDICTS_STREAM};
use offpath_protocol::{Verdict, decode_versioned};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::hub::Hub;
use crate::metrics as m;

/// Largest verdict payload read.
const MAX_VERDICT_BYTES: usize = 64 * 1024;
/// Verdicts applied between cumulative acks at most.
const ACK_EVERY: usize = 256;
/// Longest time an applied verdict stays unacked (a restart re-applies at most this much,
/// harmlessly).
const ACK_AFTER: Duration = Duration::from_millis(200);
/// Pause before binding the consumer again after NATS failed.
const RETRY: Duration = Duration::from_secs(1);
/// A durable consumer nobody pulls from for this long is removed by the server (a
/// gateway instance that is gone for good).
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(24 * 3600);

/// Name of the durable consumer of gateway `instance`.
pub fn consumer_name(instance: &str) -> String {
    format!("transport-{instance}")
}

/// The consumer's settings. A new consumer starts with the verdicts published since
/// `since` (the gateway's start: no verdict of a message it accepted is missed while the
/// consumer is being created); a restarted gateway resumes where its consumer stopped.
pub fn consumer_config(tenant: &str, instance: &str, since: time::OffsetDateTime) -> pull::Config {
    pull::Config {
        durable_name: Some(consumer_name(instance)),
        description: Some("offpath transport: verdicts to apply".into()),
        // In the stream's own shape (`offpath.verdict.*.*`): nats-server 2.9 refuses a `>`
        // filter on it as "not a valid subset of the interest subjects" (10093).
        filter_subject: format!("{VERDICT_PREFIX}.{tenant}.*"),
        deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
        ack_policy: AckPolicy::All,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 10_000,
        inactive_threshold: INACTIVE_THRESHOLD,
        ..Default::default()
    }
}

/// Consumes and applies verdicts until `stop`; survives NATS outages by binding again.
pub async fn consume(
    js: jetstream::Context,
    hub: Arc<Hub>,
    bound: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    // A second's margin for clock granularity; applying a verdict twice is harmless.
    let since = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
    let config = consumer_config(&hub.config().tenant, &hub.config().instance, since);
    loop {
        let run = run_once(&js, &hub, &config, &bound);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            result = run => {
                bound.store(false, Ordering::Relaxed);
                if let Err(err) = result {
                    metrics::counter!(m::NATS_ERRORS, "operation" => "verdicts").increment(1);
                    warn!("verdict consumer: {err}; binding again in {RETRY:?}");
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn run_once(
    js: &jetstream::Context,
    hub: &Hub,
    config: &pull::Config,
    bound: &AtomicBool,
) -> Result<(), String> {
    let stream = js
        .get_stream(VERDICTS_STREAM)
        .await
        .map_err(|e| format!("stream {VERDICTS_STREAM}: {e}"))?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            config.durable_name.as_deref().unwrap_or_default(),
            config.clone(),
        )
        .await
        .map_err(|e| format!("consumer: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("pull: {e}"))?;
    bound.store(true, Ordering::Relaxed);
    info!(consumer = ?config.durable_name, "applying verdicts");
    // Acks are cumulative (AckPolicy::All): one ack every ACK_EVERY verdicts or ACK_AFTER
    // covers everything before it, instead of one NATS publish per verdict.
    let mut unacked: Option<jetstream::Message> = None;
    let mut count = 0usize;
    let mut tick = tokio::time::interval(ACK_AFTER);
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            _ = tick.tick() => {
                ack(unacked.take()).await;
                continue;
            }
        };
        let Some(message) = next else { break };
        let message = message.map_err(|e| format!("pull: {e}"))?;
        match decode_versioned::<Verdict>(&message.payload, MAX_VERDICT_BYTES) {
            Ok(verdict) if verdict.tenant == hub.config().tenant => hub.apply_verdict(verdict),
            Ok(_) => {
                metrics::counter!(m::VERDICTS_IGNORED, "reason" => "other_tenant").increment(1)
            }
            Err(err) => {
                metrics::counter!(m::VERDICTS_IGNORED, "reason" => "malformed").increment(1);
                warn!(subject = %message.subject, "ignoring a malformed verdict: {err}");
            }
        }
        unacked = Some(message);
        count += 1;
        // Verdicts come in batches; applying a whole batch in one go would hold this
        // worker thread while sockets wait to fan out. Let them in between verdicts.
        tokio::task::yield_now().await;
        if count.is_multiple_of(ACK_EVERY) {
            ack(unacked.take()).await;
        }
    }
    ack(unacked.take()).await;
    Err("the verdict stream ended".into())
}

async fn ack(message: Option<jetstream::Message>) {
    let Some(message) = message else { return };
    if let Err(err) = message.ack().await {
        metrics::counter!(m::NATS_ERRORS, "operation" => "ack").increment(1);
        warn!("acking verdicts (they will come again; applying twice is harmless): {err}");
    }
}
