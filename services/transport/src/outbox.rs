//! Drains the outbox to the `MODERATION` stream. The send path only ever `try_send`s into
//! the outbox; this task is the only thing that waits on NATS. Publishes are pipelined (up
//! to `outbox_in_flight` awaiting their acknowledgement); a failed publish is retried with
//! the same `Nats-Msg-Id`, `<tenant>/<id>` (JetStream de-duplicates it, per tenant), so
//! nothing accepted is lost while NATS is down: requests wait here, and past the outbox's
//! bound new ones are shed. When publishes fail while NATS is connected (the `MODERATION`
//! stream was deleted, say), the missing topology is created again, at most every
//! [`ENSURE_EVERY`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use offpath_protocol::{ModerationRequest, encode};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::hub::Hub;
use crate::metrics as m;

/// Longest pause between retries while NATS is failing.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long one publish waits for JetStream's acknowledgement before it is retried.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two attempts to re-create missing streams.
const ENSURE_EVERY: Duration = Duration::from_secs(5);

type Outcome = (ModerationRequest, Result<(), String>);

/// Publishes everything the outbox receives until `stop` turns true; then flushes what it
/// holds for at most `grace` and counts the rest as shed.
pub(crate) async fn drain(
    js: jetstream::Context,
    hub: Arc<Hub>,
    mut outbox: mpsc::Receiver<ModerationRequest>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let in_flight_max = hub.config().outbox.outbox_in_flight.max(1);
    let mut in_flight = FuturesUnordered::new();
    let mut retries = Retries::default();
    let mut stopping = false;
    let mut drained = false;
    let mut flush_deadline = None;
    loop {
        let room = in_flight.len() < in_flight_max;
        if room
            && retries.at.is_none()
            && let Some(request) = retries.queue.pop_front()
        {
            in_flight.push(publish(js.clone(), request));
            continue;
        }
        if stopping && drained && in_flight.is_empty() && retries.queue.is_empty() {
            break;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                outbox.close();
                flush_deadline = Some(tokio::time::Instant::now() + grace);
                info!(held = hub.outbox_depth(), "flushing the outbox");
            }
            () = sleep_until(flush_deadline) => break,
            () = sleep_until(retries.at) => retries.at = None,
            request = outbox.recv(), if room && retries.queue.is_empty() && !drained => {
                match request {
                    Some(request) => in_flight.push(publish(js.clone(), request)),
                    None => drained = true,
                }
            }
            Some((request, result)) = in_flight.next() => match result {
                Ok(()) => {
                    retries.backoff = Duration::ZERO;
                    metrics::counter!(m::OUTBOX_PUBLISHED).increment(1);
                    hub.outbox_settled(1);
                }
                Err(err) => retries.failed(request, &err),
            },
        }
        if retries.take_ensure() {
            ensure_topology(&js, &hub).await;
        }
        if drained && !stopping {
            // Every sender is gone: flush like a shutdown.
            stopping = true;
            flush_deadline = Some(tokio::time::Instant::now() + grace);
        }
    }
    shed(&hub, &mut outbox, retries.queue.len() + in_flight.len());
}

/// Requests whose publish failed, and when to try again.
#[derive(Default)]
struct Retries {
    queue: VecDeque<ModerationRequest>,
    backoff: Duration,
    /// While NATS fails, retries wait until this instant.
    at: Option<tokio::time::Instant>,
    last_ensure: Option<tokio::time::Instant>,
    ensure_now: bool,
}

impl Retries {
    /// Publishing `request` failed: retry it after a backoff that grows while NATS fails.
    fn failed(&mut self, request: ModerationRequest, err: &str) {
        metrics::counter!(m::NATS_ERRORS, "operation" => "publish").increment(1);
        if self.at.is_none() {
            warn!(
                id = request.id,
                "publishing a moderation request: {err}; retrying"
            );
            self.backoff = (self.backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
            self.at = Some(tokio::time::Instant::now() + self.backoff);
            self.ensure_now = self
                .last_ensure
                .is_none_or(|at| at.elapsed() >= ENSURE_EVERY);
        }
        self.queue.push_back(request);
    }

    /// Whether to re-create missing streams now (at most every [`ENSURE_EVERY`]).
    fn take_ensure(&mut self) -> bool {
        let now = std::mem::take(&mut self.ensure_now);
        if now {
            self.last_ensure = Some(tokio::time::Instant::now());
        }
        now
    }
}

/// Counts as shed the `unsent` requests the drain gave up on and what is left in `outbox`.
fn shed(hub: &Hub, outbox: &mut mpsc::Receiver<ModerationRequest>, unsent: usize) {
    let mut lost = unsent;
    while outbox.try_recv().is_ok() {
        lost += 1;
    }
    if lost > 0 {
        warn!(
            lost,
            "shutdown grace passed: moderation requests not stored are shed"
        );
        metrics::counter!(m::OUTBOX_SHED, "reason" => "shutdown").increment(lost as u64);
        hub.outbox_settled(lost);
    }
}

/// Re-creates missing streams when NATS is up but refuses publishes (never changes what
/// exists). Bounded in time: this task also has a flush deadline to keep.
async fn ensure_topology(js: &jetstream::Context, hub: &Hub) {
    if js.client().connection_state() != async_nats::connection::State::Connected {
        return;
    }
    let ensure = crate::verdicts::ensure_topology(js, &hub.config().topology);
    match tokio::time::timeout(Duration::from_secs(2), ensure).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!("re-creating the JetStream topology: {err}"),
        Err(_) => warn!("re-creating the JetStream topology: no answer within 2 s"),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn publish(js: jetstream::Context, request: ModerationRequest) -> Outcome {
    let message = PublishMessage::build()
        .payload(encode(&request).into())
        .message_id(request.dedup_key());
    // Hold rooms' requests (priority high) go to the interactive lane.
    let subject = request.subject();
    let result = tokio::time::timeout(ACK_TIMEOUT, async {
        js.send_publish(subject, message)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| Err("no acknowledgement within 5 s".to_string()));
    (request, result)
}
