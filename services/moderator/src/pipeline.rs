//! From pulled message to acked request: decode → dead letter | expired verdict | batch →
//! inference → verdict published → request acked. A failed batch is split in halves until
//! the failing request is alone; it is retried with a delay and dead-lettered once its
//! deliveries reach the consumer's `max_deliver`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use futures::future::BoxFuture;
use offpath_classifier::{Assessment, Decision};
use offpath_protocol::now_ms;
use offpath_protocol::subject::dlq_subject_for;
use offpath_protocol::{
    Action, DeadLetter, Limits, ModelRef, ModerationRequest, PROTOCOL_VERSION, PolicyRef,
    ReviewItem, ReviewKind, Verdict, decode_request, encode, text_sha256,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use crate::metrics as m;
use crate::pool::{BatchError, Models, Pool, Threads};
use crate::readiness::{Health, Held};

/// Where a request came from, and so how it is answered.
pub(crate) enum Origin {
    /// Pulled from `MODERATION`: the verdict is published, then the request acked.
    Stream(Box<jetstream::Message>),
    /// A synchronous `offpath.classify` call: the verdict goes back to the caller only.
    Direct(tokio::sync::oneshot::Sender<Verdict>),
}

/// A decoded request waiting for inference. `Held` bounds requests in flight and times
/// stalls; it is released when the request is settled.
pub(crate) struct Pending {
    pub(crate) origin: Origin,
    pub(crate) request: ModerationRequest,
    pub(crate) deliveries: i64,
    pub(crate) _held: Held,
}

/// What every stage shares.
pub(crate) struct Shared {
    pub(crate) js: jetstream::Context,
    pub(crate) pool: Pool,
    pub(crate) health: Arc<Health>,
    pub(crate) limits: Limits,
    /// The bound consumer's settings, re-read at every (re-)bind.
    pub(crate) consumer: crate::consumer::Settings,
    pub(crate) nak_delay: Duration,
    pub(crate) cache: crate::cache::VerdictCache,
    /// Which policy judges which request (replaced whole on a reload).
    pub(crate) policies: Arc<crate::policies::LivePolicies>,
    /// What a policy bucket value must pass (a trusted signature, not older than the
    /// newest seen) before anything reads it.
    pub(crate) policy_gate: crate::policies::Gate,
    /// The model directories and what was loaded from them (a model reload's lock).
    pub(crate) model_files: tokio::sync::Mutex<crate::model_reload::ModelFiles>,
}

/// Handles one pulled message: a request that cannot be decoded becomes a dead letter, an
/// expired one an `unmoderated` verdict; the rest go to the batcher.
pub(crate) async fn intake(
    shared: &Arc<Shared>,
    message: jetstream::Message,
    held: Held,
    batches: &mpsc::Sender<Pending>,
    side_tasks: &mut JoinSet<()>,
) {
    let deliveries = message.info().map(|i| i.delivered).unwrap_or(1);
    metrics::counter!(m::LANE_REQUESTS, "lane" => m::lane_of(&message.subject)).increment(1);
    match decode_request(&message.subject, &message.payload, &shared.limits) {
        Err(err) => {
            let shared = Arc::clone(shared);
            side_tasks.spawn(async move {
                let (reason, detail) = (err.reason(), err.to_string());
                dead_letter(&shared, &message, None, reason, detail, deliveries).await;
                drop(held);
            });
        }
        Ok(request) if request.deadline_ms.is_some_and(|d| d < now_ms()) => {
            let shared = Arc::clone(shared);
            side_tasks.spawn(async move {
                let verdict = shared.verdict(&request, None, 0, Some("expired"));
                finish(
                    &shared,
                    vec![(Origin::Stream(Box::new(message)), verdict, None)],
                    "expired",
                )
                .await;
                drop(held);
            });
        }
        Ok(request) => {
            // Looked up once: the assessment moves into the task, so an entry expiring
            // meanwhile cannot turn a hit into a verdict without scores.
            let models = shared.pool.models();
            if let Some(assessment) = shared.cache.get(&request.text, &models) {
                let shared = Arc::clone(shared);
                side_tasks.spawn(async move {
                    metrics::counter!(m::CACHE_HITS).increment(1);
                    let assessed = Some((&assessment, &*models));
                    let verdict = shared.verdict(&request, assessed, 0, None);
                    let review = shared.review_of(&request, &verdict);
                    let settled = vec![(Origin::Stream(Box::new(message)), verdict, review)];
                    finish(&shared, settled, "cached").await;
                    drop(held);
                });
                return;
            }
            let pending = Pending {
                origin: Origin::Stream(Box::new(message)),
                request,
                deliveries,
                _held: held,
            };
            if batches.send(pending).await.is_err() {
                debug!("batcher closed during shutdown; the request will be redelivered");
            }
        }
    }
}

impl Shared {
    /// The verdict on `request`: decided by the policy in force on the assessment and the
    /// models that made it, or, without one, `unmoderated` by the models in force.
    pub(crate) fn verdict(
        &self,
        request: &ModerationRequest,
        assessed: Option<(&Assessment, &Models)>,
        inference_ms: u64,
        reason: Option<&str>,
    ) -> Verdict {
        let in_force;
        let (assessment, models) = match assessed {
            Some((assessment, models)) => (Some(assessment), models),
            None => {
                in_force = self.pool.models();
                (None, &*in_force)
            }
        };
        // The models scored every label; the request's policy decides on them (the cache
        // holds scores, so a cached assessment serves every policy).
        let policies = self.policies.for_models(&models.version);
        let selection = policies.select(&request.tenant, &request.room, request.policy.as_deref());
        if let Some(fallback) = selection.fallback {
            metrics::counter!(m::POLICY_FALLBACKS, "reason" => fallback.reason()).increment(1);
            debug!(id = %request.id, requested = ?request.policy, applied = %selection.rules.name,
                "request named an unknown policy");
        }
        let decided = assessment.map(|a| selection.rules.decide(&a.scores));
        let action = match decided.as_ref().map(|a| a.decision) {
            None => Action::Unmoderated,
            Some(Decision::Allow) => Action::Allow,
            Some(Decision::Flag) => Action::Flag,
            Some(Decision::Block) => Action::Block,
        };
        if decided.is_some() {
            let policy = selection.rules.name.clone();
            metrics::counter!(m::POLICY_VERDICTS, "policy" => policy.clone(), "action" => action.as_str())
                .increment(1);
            let waited = now_ms().saturating_sub(request.sent_at_ms) as f64 / 1000.0;
            metrics::histogram!(m::POLICY_VERDICT_SECONDS, "policy" => policy).record(waited);
        }
        let policy = policies.from_file().then(|| PolicyRef {
            name: selection.rules.name.clone(),
            version: selection.rules.version.clone(),
        });
        Verdict {
            v: PROTOCOL_VERSION,
            id: request.id.clone(),
            tenant: request.tenant.clone(),
            room: request.room.clone(),
            sender: request.sender.clone(),
            action,
            scores: decided.map(|a| a.scores).unwrap_or_default(),
            model: ModelRef {
                name: models.name.clone(),
                version: models.version.clone(),
            },
            queued_ms: now_ms()
                .saturating_sub(request.sent_at_ms)
                .saturating_sub(inference_ms),
            inference_ms,
            reason: reason.map(String::from),
            // Binds the verdict to the exact text judged (a cached assessment is for the
            // same exact text: the cache is keyed by it).
            text_sha256: Some(text_sha256(&request.text)),
            policy,
            review: None,
        }
    }
}

impl Shared {
    /// The review-queue item of `verdict` on `request`: a flagged message goes to a
    /// person, and a blocked one when its policy says `review_blocked`. A member's report
    /// always does, whatever the model said, as an item whose verdict names the reported
    /// message (so a reviewer's decision acts on it); no verdict is published for it.
    fn review_of(&self, request: &ModerationRequest, verdict: &Verdict) -> Option<ReviewItem> {
        if let Some(report) = &request.report {
            let mut verdict = verdict.clone();
            verdict.id = report.message_id.clone();
            let mut item = ReviewItem::new(
                ReviewKind::Report,
                &verdict,
                &request.text,
                report.message_sent_at_ms,
            );
            item.report = Some(report.clone());
            item.context = request.context.clone();
            return Some(item);
        }
        let kind = match verdict.action {
            Action::Flag => ReviewKind::Flag,
            Action::Block if self.reviews_blocked(request, verdict) => ReviewKind::Block,
            _ => return None,
        };
        let mut item = ReviewItem::new(kind, verdict, &request.text, request.sent_at_ms);
        item.context = request.context.clone();
        Some(item)
    }

    /// Whether the policy that decided `verdict` reviews what it blocks.
    fn reviews_blocked(&self, request: &ModerationRequest, verdict: &Verdict) -> bool {
        let set = self.policies.for_models(&verdict.model.version);
        let selection = set.select(&request.tenant, &request.room, request.policy.as_deref());
        selection.rules.reviews_blocked()
    }
}

/// Runs a batch through inference and settles every request in it. Boxed: it recurses to
/// bisect a failing batch.
pub(crate) fn process(
    shared: Arc<Shared>,
    batch: Vec<Pending>,
    slot: Option<crate::batcher::Slot>,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let now = now_ms() as f64 / 1000.0;
        for pending in &batch {
            if let Origin::Stream(message) = &pending.origin
                && let Ok(info) = message.info()
            {
                let published = info.published.unix_timestamp_nanos() as f64 / 1e9;
                metrics::histogram!(m::QUEUE_SECONDS).record((now - published).max(0.0));
            }
        }
        metrics::histogram!(m::BATCH_SIZE).record(batch.len() as f64);
        let texts = batch.iter().map(|p| p.request.text.clone()).collect();
        let started = Instant::now();
        let threads = slot.as_ref().map_or(Threads::Shared, |s| s.threads);
        let result = with_progress(&shared, &batch, shared.pool.run(texts, threads)).await;
        // The inference thread is free now: let the batcher form the next batch while this
        // one's verdicts are published and acked (NATS round trips that would otherwise
        // leave a thread idle: measured 0.17 of 2 cores idle at saturation).
        drop(slot);
        let elapsed = started.elapsed();
        match result {
            Ok((assessments, models)) => {
                metrics::histogram!(m::INFERENCE_SECONDS).record(elapsed.as_secs_f64());
                shared.health.progressed(batch.len());
                let inference_ms = elapsed.as_millis() as u64;
                let settled = batch
                    .into_iter()
                    .zip(&assessments)
                    .map(|(p, a)| {
                        shared.cache.put(&p.request.text, a, &models);
                        let assessed = Some((a, &*models));
                        let verdict = shared.verdict(&p.request, assessed, inference_ms, None);
                        let review = shared.review_of(&p.request, &verdict);
                        (p.origin, verdict, review)
                    })
                    .collect();
                finish(&shared, settled, "verdict").await;
            }
            Err(err) => failed(shared, batch, err).await,
        }
    })
}

/// Awaits `work`, telling JetStream every `progress_every` that the batch's requests are
/// being worked on, so a slow (or stalled, until the watchdog acts) batch is not
/// redelivered to another moderator meanwhile. Only requests in a running batch get this.
async fn with_progress<T>(
    shared: &Shared,
    batch: &[Pending],
    work: impl std::future::Future<Output = T>,
) -> T {
    let messages: Vec<&jetstream::Message> = batch
        .iter()
        .filter_map(|pending| match &pending.origin {
            Origin::Stream(message) => Some(&**message),
            Origin::Direct(_) => None,
        })
        .collect();
    crate::publish::with_progress(&messages, shared.consumer.progress_every(), work).await
}

async fn failed(shared: Arc<Shared>, mut batch: Vec<Pending>, err: BatchError) {
    metrics::counter!(m::BATCH_FAILURES, "reason" => err.reason()).increment(1);
    warn!(size = batch.len(), "batch failed: {err}");
    let retry_whole = matches!(
        err,
        BatchError::Cancelled | BatchError::Hung | BatchError::Closed
    );
    if batch.len() > 1 && !retry_whole {
        let right = batch.split_off(batch.len() / 2);
        process(Arc::clone(&shared), batch, None).await;
        process(shared, right, None).await;
        return;
    }
    for pending in batch {
        let message = match pending.origin {
            Origin::Direct(reply) => {
                // A synchronous caller gets an answer now, not a retry.
                let _ = reply.send(shared.verdict(&pending.request, None, 0, Some(err.reason())));
                continue;
            }
            Origin::Stream(message) => *message,
        };
        if pending.deliveries >= shared.consumer.max_deliver() && !matches!(err, BatchError::Closed)
        {
            let detail = format!("{err} on each of {} deliveries", pending.deliveries);
            let id = Some(pending.request.id.clone());
            let reason = err.reason();
            dead_letter(&shared, &message, id, reason, detail, pending.deliveries).await;
        } else {
            nak(&shared, &message).await;
        }
    }
}

async fn nak(shared: &Shared, message: &jetstream::Message) {
    metrics::counter!(m::REQUESTS, "outcome" => "retried").increment(1);
    if let Err(err) = message.ack_with(AckKind::Nak(Some(shared.nak_delay))).await {
        metrics::counter!(m::NATS_ERRORS, "operation" => "nak").increment(1);
        warn!("nak failed (the request is redelivered after ack_wait): {err}");
    }
}

/// How long a review item's publish may wait for `REVIEW`'s acknowledgement.
const REVIEW_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A request's verdict, and its review-queue item when it has one.
type Settled = (Origin, Verdict, Option<ReviewItem>);

/// Publishes each verdict (stored in `VERDICTS`, de-duplicated by tenant, request id and
/// text digest: [`Verdict::dedup_key`]) and its review-queue item (in `REVIEW`), then acks
/// its request; a request whose verdict or item was not stored is nak'ed, never acked. A
/// report's request publishes its item only.
async fn finish(shared: &Shared, settled: Vec<Settled>, outcome: &'static str) {
    let mut stream = Vec::with_capacity(settled.len());
    let mut reviews = Vec::with_capacity(settled.len());
    let mut reports = Vec::new();
    for (origin, verdict, review) in settled {
        match origin {
            Origin::Stream(message) => match review {
                Some(item) if item.kind == ReviewKind::Report => {
                    reports.push((*message, verdict, Some(item)));
                }
                review => {
                    stream.push((*message, verdict));
                    reviews.push(review);
                }
            },
            Origin::Direct(reply) => {
                metrics::counter!(m::REQUESTS, "outcome" => "direct").increment(1);
                let _ = reply.send(verdict);
            }
        }
    }
    let progress_every = shared.consumer.progress_every();
    let mut results = crate::publish::store(&shared.js, &stream, progress_every).await;
    for (message, verdict, review) in reports {
        stream.push((message, verdict));
        reviews.push(review);
        results.push(Ok(()));
    }
    let settled = stream;
    for (((message, verdict), result), review) in settled.iter().zip(results).zip(reviews) {
        let result = match (result, review) {
            (Ok(()), Some(item)) => queue_for_review(shared, message, &item).await,
            (result, _) => result.map(|()| Queued::Stored),
        };
        match result {
            Ok(Queued::DeadLettered) => {}
            Ok(Queued::Stored) => {
                metrics::counter!(m::REQUESTS, "outcome" => outcome).increment(1);
                if let Ok(info) = message.info() {
                    let published = info.published.unix_timestamp_nanos() as f64 / 1e9;
                    let waited = (now_ms() as f64 / 1000.0 - published).max(0.0);
                    metrics::histogram!(m::LANE_VERDICT_SECONDS, "lane" => m::lane_of(&message.subject))
                        .record(waited);
                }
                ack(message).await;
            }
            Err(err) => {
                // Counted in publish_verdict / publish_review errors (crate::publish, below).
                warn!(id = %verdict.id, "verdict or review item not stored, request will be redelivered: {err}");
                nak(shared, message).await;
            }
        }
    }
}

/// How a request with a review item was settled.
enum Queued {
    /// Its verdict (if any) and item are stored, or the item is lost and counted: ack it.
    Stored,
    /// It was dead-lettered (and so acked) instead.
    DeadLettered,
}

/// Publishes a review-queue item; counts it, or the failure. A failure fails the request
/// (nak'ed: its redelivery publishes again) until its last delivery: then the request is
/// settled anyway, its verdict being stored, and the lost item counted and logged, so a
/// missing `REVIEW` stream cannot hold flagged requests in `MODERATION` for a day. A
/// report has no verdict to stand: its request is dead-lettered (kept whole, for an
/// operator to publish again) rather than lost.
async fn queue_for_review(
    shared: &Shared,
    message: &jetstream::Message,
    item: &ReviewItem,
) -> Result<Queued, String> {
    let stored = tokio::time::timeout(
        REVIEW_PUBLISH_TIMEOUT,
        crate::publish::review(&shared.js, item),
    )
    .await
    .unwrap_or_else(|_| Err("no acknowledgement from REVIEW".into()));
    let Err(err) = stored else {
        metrics::counter!(m::REVIEW_ITEMS, "kind" => item.kind.as_str()).increment(1);
        return Ok(Queued::Stored);
    };
    metrics::counter!(m::NATS_ERRORS, "operation" => "publish_review").increment(1);
    let deliveries = message.info().map(|i| i.delivered).unwrap_or(1);
    if deliveries < shared.consumer.max_deliver() {
        return Err(err);
    }
    if let Some(report) = &item.report {
        let detail =
            format!("the review item of a report was not stored on its last delivery: {err}");
        let id = Some(report.message_id.clone());
        dead_letter(shared, message, id, REVIEW_UNAVAILABLE, detail, deliveries).await;
        return Ok(Queued::DeadLettered);
    }
    metrics::counter!(m::REVIEW_ITEMS_LOST).increment(1);
    error!(
        id = %item.verdict.id,
        "review item not stored on the request's last delivery; its verdict stands, the \
         review is lost (is the REVIEW stream there? `offpath topology`): {err}"
    );
    Ok(Queued::Stored)
}

/// The dead-letter reason of a report whose review item could not be stored.
pub(crate) const REVIEW_UNAVAILABLE: &str = "review_unavailable";

async fn ack(message: &jetstream::Message) {
    if let Err(err) = message.ack().await {
        metrics::counter!(m::NATS_ERRORS, "operation" => "ack").increment(1);
        warn!("ack failed (the request is redelivered; its verdict is de-duplicated): {err}");
    }
}

/// Publishes a dead letter with the original bytes, then acks (ends) the request.
async fn dead_letter(
    shared: &Shared,
    message: &jetstream::Message,
    id: Option<String>,
    reason: &'static str,
    detail: String,
    deliveries: i64,
) {
    let info = message.info().ok();
    let mut letter = DeadLetter::new(
        &message.subject,
        &message.payload,
        reason,
        detail,
        u64::try_from(deliveries).unwrap_or(1),
        now_ms(),
    );
    letter.stream_seq = info.as_ref().map(|i| i.stream_sequence);
    letter.id = id;
    let mut publish = PublishMessage::build().payload(encode(&letter).into());
    if let Some(seq) = letter.stream_seq {
        // One dead letter per stored request, even if this one is redelivered.
        publish = publish.message_id(format!("dlq-{seq}"));
    }
    let stored = match shared
        .js
        .send_publish(dlq_subject_for(&message.subject), publish)
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    match stored {
        Ok(()) => {
            metrics::counter!(m::DEAD_LETTERS, "reason" => reason).increment(1);
            metrics::counter!(m::REQUESTS, "outcome" => "dead_letter").increment(1);
            ack(message).await;
        }
        Err(err) => {
            metrics::counter!(m::NATS_ERRORS, "operation" => "publish_dead_letter").increment(1);
            warn!("dead letter not stored, request will be retried: {err}");
            nak(shared, message).await;
        }
    }
}
