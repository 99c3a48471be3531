//! The settling stage: publishes each verdict and review-queue item, then acks the
//! request; a request whose verdict or item was not stored is nak'ed for redelivery, one
//! that cannot be judged becomes a dead letter (its original bytes kept). At-least-once:
//! nothing is acked before what it produced is stored.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use offpath_protocol::subject::dlq_subject_for;
use offpath_protocol::{DeadLetter, ReviewItem, ReviewKind, encode, now_ms};
use tracing::{error, warn};

use crate::delivery::Settings;
use crate::metrics as m;
use crate::work::{Origin, Settled};

/// How long a review item's publish may wait for `REVIEW`'s acknowledgement.
const REVIEW_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// What settling needs: the JetStream context, the bound consumer's delivery settings and
/// the delay of a nak.
pub(crate) struct Settler {
    js: jetstream::Context,
    delivery: Arc<Settings>,
    nak_delay: Duration,
}

impl Settler {
    /// A settler publishing through `js`, reading `delivery`, nak'ing with `nak_delay`.
    pub(crate) fn new(
        js: jetstream::Context,
        delivery: Arc<Settings>,
        nak_delay: Duration,
    ) -> Self {
        Self {
            js,
            delivery,
            nak_delay,
        }
    }

    /// Publishes each verdict (stored in `VERDICTS`, de-duplicated by tenant, request id and
    /// text digest: [`Verdict::dedup_key`]) and its review-queue item (in `REVIEW`), then acks
    /// its request; a request whose verdict or item was not stored is nak'ed, never acked. A
    /// report's request publishes its item only.
    pub(crate) async fn finish(&self, settled: Vec<Settled>, outcome: &'static str) {
        let mut stream = Vec::with_capacity(settled.len());
        let mut reviews = Vec::with_capacity(settled.len());
        let mut reports = Vec::new();
        for Settled {
            origin,
            verdict,
            review,
        } in settled
        {
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
        let progress_every = self.delivery.progress_every();
        let mut results = crate::publish::store(&self.js, &stream, progress_every).await;
        for (message, verdict, review) in reports {
            stream.push((message, verdict));
            reviews.push(review);
            results.push(Ok(()));
        }
        let settled = stream;
        for (((message, verdict), result), review) in settled.iter().zip(results).zip(reviews) {
            let result = match (result, review) {
                (Ok(()), Some(item)) => self.queue_for_review(message, &item).await,
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
                    self.nak(message).await;
                }
            }
        }
    }

    /// Publishes a review-queue item; counts it, or the failure. A failure fails the request
    /// (nak'ed: its redelivery publishes again) until its last delivery: then the request is
    /// settled anyway, its verdict being stored, and the lost item counted and logged, so a
    /// missing `REVIEW` stream cannot hold flagged requests in `MODERATION` for a day. A
    /// report has no verdict to stand: its request is dead-lettered (kept whole, for an
    /// operator to publish again) rather than lost.
    async fn queue_for_review(
        &self,
        message: &jetstream::Message,
        item: &ReviewItem,
    ) -> Result<Queued, String> {
        let stored = tokio::time::timeout(
            REVIEW_PUBLISH_TIMEOUT,
            crate::publish::review(&self.js, item),
        )
        .await
        .unwrap_or_else(|_| Err("no acknowledgement from REVIEW".into()));
        let Err(err) = stored else {
            metrics::counter!(m::REVIEW_ITEMS, "kind" => item.kind.as_str()).increment(1);
            return Ok(Queued::Stored);
        };
        metrics::counter!(m::NATS_ERRORS, "operation" => "publish_review").increment(1);
        let deliveries = message.info().map(|i| i.delivered).unwrap_or(1);
        if deliveries < self.delivery.max_deliver() {
            return Err(err);
        }
        if let Some(report) = &item.report {
            let detail =
                format!("the review item of a report was not stored on its last delivery: {err}");
            let id = Some(report.message_id.clone());
            self.dead_letter(message, id, m::REVIEW_UNAVAILABLE, detail, deliveries)
                .await;
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

    pub(crate) async fn nak(&self, message: &jetstream::Message) {
        metrics::counter!(m::REQUESTS, "outcome" => "retried").increment(1);
        if let Err(err) = message.ack_with(AckKind::Nak(Some(self.nak_delay))).await {
            metrics::counter!(m::NATS_ERRORS, "operation" => "nak").increment(1);
            warn!("nak failed (the request is redelivered after ack_wait): {err}");
        }
    }

    /// Publishes a dead letter with the original bytes, then acks (ends) the request.
    pub(crate) async fn dead_letter(
        &self,
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
        let stored = match self
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
                metrics::counter!(m::NATS_ERRORS, "operation" => "publish_dead_letter")
                    .increment(1);
                warn!("dead letter not stored, request will be retried: {err}");
                self.nak(message).await;
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

async fn ack(message: &jetstream::Message) {
    if let Err(err) = message.ack().await {
        metrics::counter!(m::NATS_ERRORS, "operation" => "ack").increment(1);
        warn!("ack failed (the request is redelivered; its verdict is de-duplicated): {err}");
    }
}
