//! The inference stage: runs a batch on the pool's inference threads (telling JetStream
//! meanwhile that its requests are being worked on), judges each request on its
//! assessment and hands the verdicts to settling. A failed batch is split in halves until
//! the failing request is alone; it is retried with a delay, and dead-lettered once its
//! deliveries reach the consumer's `max_deliver`.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;
use futures::future::BoxFuture;
use offpath_protocol::{Action, now_ms};
use tracing::warn;

use crate::batcher::Slot;
use crate::cache::VerdictCache;
use crate::delivery::Settings;
use crate::judge::Judge;
use crate::metrics as m;
use crate::pool::{BatchError, Pool, Threads};
use crate::readiness::Health;
use crate::settle::Settler;
use crate::work::{Origin, Pending, Settled};

/// What inference needs: the pool, the health it reports progress to, the spam-wave cache
/// it fills, the judge and the settler of what it produced.
pub(crate) struct Inference {
    pub(crate) pool: Arc<Pool>,
    pub(crate) health: Arc<Health>,
    pub(crate) cache: Arc<VerdictCache>,
    pub(crate) delivery: Arc<Settings>,
    pub(crate) judge: Arc<Judge>,
    pub(crate) settler: Arc<Settler>,
}

impl Inference {
    /// Runs a batch through inference and settles every request in it. Boxed: it recurses to
    /// bisect a failing batch.
    pub(crate) fn process(
        self: Arc<Self>,
        batch: Vec<Pending>,
        slot: Option<Slot>,
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
            let result = self
                .with_progress(&batch, self.pool.run(texts, threads))
                .await;
            // The inference thread is free now: let the batcher form the next batch while this
            // one's verdicts are published and acked (NATS round trips that would otherwise
            // leave a thread idle: measured 0.17 of 2 cores idle at saturation).
            drop(slot);
            let elapsed = started.elapsed();
            match result {
                Ok((assessments, models)) => {
                    metrics::histogram!(m::INFERENCE_SECONDS).record(elapsed.as_secs_f64());
                    self.health.progressed(batch.len());
                    let inference_ms = elapsed.as_millis() as u64;
                    let settled = batch
                        .into_iter()
                        .zip(&assessments)
                        .map(|(p, a)| {
                            self.cache.put(&p.request.text, a, &models);
                            let assessed = Some((a, &*models));
                            let timing = (inference_ms, None);
                            let note = p.note.as_ref();
                            let mut verdict =
                                self.judge.verdict(&p.request, assessed, timing, note);
                            if matches!(p.origin, Origin::Stream(_)) {
                                self.judge.settled(&p.request, &mut verdict);
                            }
                            let review = self.judge.review_of(&p.request, &verdict);
                            Settled {
                                origin: p.origin,
                                verdict,
                                review,
                            }
                        })
                        .collect();
                    self.settler.finish(settled, "verdict").await;
                }
                Err(err) => self.failed(batch, err).await,
            }
        })
    }

    /// Awaits `work`, telling JetStream every `progress_every` that the batch's requests are
    /// being worked on, so a slow (or stalled, until the watchdog acts) batch is not
    /// redelivered to another moderator meanwhile. Only requests in a running batch get this.
    async fn with_progress<T>(
        &self,
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
        crate::publish::with_progress(&messages, self.delivery.progress_every(), work).await
    }

    async fn failed(self: Arc<Self>, mut batch: Vec<Pending>, err: BatchError) {
        metrics::counter!(m::BATCH_FAILURES, "reason" => err.reason()).increment(1);
        warn!(size = batch.len(), "batch failed: {err}");
        let retry_whole = matches!(
            err,
            BatchError::Cancelled | BatchError::Hung | BatchError::Closed
        );
        if batch.len() > 1 && !retry_whole {
            let right = batch.split_off(batch.len() / 2);
            Arc::clone(&self).process(batch, None).await;
            self.process(right, None).await;
            return;
        }
        for pending in batch {
            let message = match pending.origin {
                Origin::Direct(reply) => {
                    // A synchronous caller gets an answer now, not a retry.
                    let timing = (0, Some(err.reason()));
                    let note = pending.note.as_ref();
                    let _ = reply.send(self.judge.verdict(&pending.request, None, timing, note));
                    continue;
                }
                Origin::Stream(message) => *message,
            };
            if pending.deliveries >= self.delivery.max_deliver()
                && !matches!(err, BatchError::Closed)
            {
                // A rule that let the models run and flags or blocks still has its say: a
                // verdict without scores instead of a dead letter.
                if let Some(note) = pending.note.as_ref().filter(|n| n.action != Action::Allow) {
                    let timing = (0, Some(err.reason()));
                    let mut verdict =
                        self.judge
                            .verdict(&pending.request, None, timing, Some(note));
                    self.judge.settled(&pending.request, &mut verdict);
                    let review = self.judge.review_of(&pending.request, &verdict);
                    let origin = Origin::Stream(Box::new(message));
                    let settled = Settled {
                        origin,
                        verdict,
                        review,
                    };
                    self.settler.finish(vec![settled], "ruled").await;
                    continue;
                }
                let detail = format!("{err} on each of {} deliveries", pending.deliveries);
                let id = Some(pending.request.id.clone());
                let reason = err.reason();
                self.settler
                    .dead_letter(&message, id, reason, detail, pending.deliveries)
                    .await;
            } else {
                self.settler.nak(&message).await;
            }
        }
    }
}
