//! The intake stage: one pulled message at a time. A request that cannot be decoded becomes
//! a dead letter, an expired one an `unmoderated` verdict, one whose exact text the
//! spam-wave cache holds a verdict from the cached scores; the rest go to the batcher.

use std::sync::Arc;

use async_nats::jetstream;
use offpath_protocol::{Limits, ModerationRequest, Verdict, decode_request, now_ms};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

use crate::cache::VerdictCache;
use crate::judge::Judge;
use crate::metrics as m;
use crate::pool::Pool;
use crate::readiness::Held;
use crate::screen::Screen;
use crate::settle::Settler;
use crate::work::{Origin, Pending, Screened, Settled};

/// What intake needs: the request limits, the cache and the pool's models it is keyed by,
/// the judge and the settler of what it decides without inference.
pub(crate) struct Admission {
    pub(crate) limits: Limits,
    /// The rules stage: a policy's text rules, before the cache and the models.
    pub(crate) screen: Arc<Screen>,
    pub(crate) cache: Arc<VerdictCache>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) judge: Arc<Judge>,
    pub(crate) settler: Arc<Settler>,
}

impl Admission {
    /// Handles one pulled message: a request that cannot be decoded becomes a dead letter, an
    /// expired one an `unmoderated` verdict; the rest go to the batcher.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        message: jetstream::Message,
        held: Held,
        batches: &mpsc::Sender<Pending>,
        side_tasks: &mut JoinSet<()>,
    ) {
        let deliveries = message.info().map(|i| i.delivered).unwrap_or(1);
        metrics::counter!(m::LANE_REQUESTS, "lane" => m::lane_of(&message.subject)).increment(1);
        match decode_request(&message.subject, &message.payload, &self.limits) {
            Err(err) => {
                let this = Arc::clone(self);
                side_tasks.spawn(async move {
                    let (reason, detail) = (err.reason(), err.to_string());
                    this.settler
                        .dead_letter(&message, None, reason, detail, deliveries)
                        .await;
                    drop(held);
                });
            }
            Ok(request) if request.deadline_ms.is_some_and(|d| d < now_ms()) => {
                self.expired(request, message, held, side_tasks);
            }
            Ok(request) => {
                let note = match self.screen.check(&request, true) {
                    Screened::Decided(verdict) => {
                        self.settle_now(request, *verdict, message, held, side_tasks, "ruled");
                        return;
                    }
                    Screened::Noted(note) => Some(note),
                    Screened::Passed => None,
                };
                // Looked up once: the assessment moves into the task, so an entry expiring
                // meanwhile cannot turn a hit into a verdict without scores.
                let models = self.pool.models();
                if let Some(assessment) = self.cache.get(&request.text, &models) {
                    metrics::counter!(m::CACHE_HITS).increment(1);
                    let assessed = Some((&assessment, &*models));
                    let verdict = self
                        .judge
                        .verdict(&request, assessed, (0, None), note.as_ref());
                    self.settle_now(request, verdict, message, held, side_tasks, "cached");
                    return;
                }
                let pending = Pending {
                    origin: Origin::Stream(Box::new(message)),
                    request,
                    deliveries,
                    note,
                    _held: held,
                };
                if batches.send(pending).await.is_err() {
                    debug!("batcher closed during shutdown; the request will be redelivered");
                }
            }
        }
    }

    /// A request past its deadline: too late for the models, not for a rule (it costs no
    /// inference, and a late block still retracts the message); else `unmoderated`.
    fn expired(
        self: &Arc<Self>,
        request: ModerationRequest,
        message: jetstream::Message,
        held: Held,
        side_tasks: &mut JoinSet<()>,
    ) {
        if let Screened::Decided(verdict) = self.screen.check(&request, true) {
            self.settle_now(request, *verdict, message, held, side_tasks, "ruled");
            return;
        }
        let this = Arc::clone(self);
        side_tasks.spawn(async move {
            let verdict = this
                .judge
                .verdict(&request, None, (0, Some("expired")), None);
            let settled = Settled {
                origin: Origin::Stream(Box::new(message)),
                verdict,
                review: None,
            };
            this.settler.finish(vec![settled], "expired").await;
            drop(held);
        });
    }

    /// Settles `request` with `verdict` decided without inference (`how`: `ruled`,
    /// `cached`), its review item with it, in a side task.
    fn settle_now(
        self: &Arc<Self>,
        request: ModerationRequest,
        mut verdict: Verdict,
        message: jetstream::Message,
        held: Held,
        side_tasks: &mut JoinSet<()>,
        how: &'static str,
    ) {
        let this = Arc::clone(self);
        side_tasks.spawn(async move {
            this.judge.settled(&request, &mut verdict);
            let review = this.judge.review_of(&request, &verdict);
            let settled = Settled {
                origin: Origin::Stream(Box::new(message)),
                verdict,
                review,
            };
            this.settler.finish(vec![settled], how).await;
            drop(held);
        });
    }
}
