//! Batches from the two lanes' queues: the interactive lane first, never starving bulk.
//!
//! Two kinds of inference slot: the shared threads' (`--inference-threads`) and the threads
//! reserved for the interactive lane (`--interactive-threads`). A hold room's request must
//! not wait for a bulk batch to finish inference (measured: it then waits one bulk batch
//! for a thread and a second one inside a mixed batch, 12.7 × an idle system's p99), so
//! while a reserved thread is free an interactive request goes to it at once, in a batch of
//! interactive requests only. When every reserved thread is busy the interactive lane
//! takes the shared threads too, ahead of bulk but at most three quarters of a batch while
//! bulk requests wait: an interactive flood cannot starve the bulk lane.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::pool::Threads;
use crate::work::Pending;

/// Shared-thread batches in a row with no bulk request after which a waiting bulk request
/// goes first.
const FAIR_STREAK: usize = 3;

/// The two lanes' queues of decoded requests.
pub(crate) struct Lanes {
    /// Requests someone waits for (hold rooms): taken first.
    pub(crate) interactive: mpsc::Receiver<Pending>,
    /// Everything else, and synchronous calls.
    pub(crate) bulk: mpsc::Receiver<Pending>,
}

/// A request and whether it came from the interactive lane.
type Next = (Pending, bool);

impl Lanes {
    /// The next request (interactive first, when `interactive`); `None` once the lanes
    /// allowed are closed.
    async fn next(&mut self, interactive: bool) -> Option<Next> {
        tokio::select! {
            biased;
            Some(pending) = self.interactive.recv(), if interactive => Some((pending, true)),
            Some(pending) = self.bulk.recv() => Some((pending, false)),
            else => None,
        }
    }

    /// A request that is already queued: interactive first while `interactive_first`,
    /// then bulk, then interactive (while `interactive`; when no bulk request waits,
    /// nothing is starved).
    fn ready(&mut self, interactive_first: bool, interactive: bool) -> Option<Next> {
        let take = |lanes: &mut Self| lanes.interactive.try_recv().ok().map(|p| (p, true));
        let first = if interactive_first { take(self) } else { None };
        first
            .or_else(|| self.bulk.try_recv().ok().map(|p| (p, false)))
            .or_else(|| if interactive { take(self) } else { None })
    }
}

/// The inference slots a batch can run in.
pub(crate) struct Slots {
    /// One permit per shared inference thread.
    pub(crate) shared: Arc<Semaphore>,
    /// One permit per thread reserved for the interactive lane (none: `Semaphore::new(0)`).
    pub(crate) reserved: Arc<Semaphore>,
}

/// A free inference thread of one kind, held until its batch's inference has finished.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    /// Which of the pool's threads run the batch.
    pub(crate) threads: Threads,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, threads: Threads) -> Self {
        Self {
            _permit: permit,
            threads,
        }
    }
}

/// The free slots the batcher holds while it waits for a request to put in them.
#[derive(Default)]
struct Held {
    reserved: Option<OwnedSemaphorePermit>,
    shared: Option<OwnedSemaphorePermit>,
}

/// Collects pending requests into batches. Waits for a free inference slot first, so that
/// while every thread is busy requests accumulate and the next batch is fuller. An
/// interactive request goes to a free reserved thread at once with the interactive
/// requests queued behind it; otherwise a batch on a shared thread takes what is queued
/// (interactive first, up to three quarters of the batch while bulk requests wait), waiting
/// at most `max_wait` for more.
/// Each batch goes to `run` with its inference slot (start-up supplies the next stage: the
/// batcher imports none).
pub(crate) async fn batcher<F>(
    run: F,
    lanes: Lanes,
    slots: Slots,
    max_batch: usize,
    max_wait: Duration,
) where
    F: Fn(Vec<Pending>, Option<Slot>) -> futures::future::BoxFuture<'static, ()>,
{
    let mut running = JoinSet::new();
    let mut state = Batching {
        lanes,
        slots,
        held: Held::default(),
        interactive_open: true,
        bulk_open: true,
        streak: 0,
        max_batch,
        max_wait,
    };
    while state.interactive_open || state.bulk_open {
        let (first, is_interactive) = match state.next_first().await {
            Waited::First(pending, is_interactive) => (pending, is_interactive),
            Waited::Again => continue,
            Waited::Closed => break,
        };
        let (slot, batch) = state.form(first, is_interactive).await;
        running.spawn(run(batch, slot));
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// What the batcher holds between batches.
struct Batching {
    lanes: Lanes,
    slots: Slots,
    held: Held,
    interactive_open: bool,
    bulk_open: bool,
    /// Shared-thread batches in a row without a bulk request: at `FAIR_STREAK` a waiting
    /// bulk request goes first (with batches of one, the share cap alone would let an
    /// interactive flood take every shared batch).
    streak: usize,
    max_batch: usize,
    max_wait: Duration,
}

/// What waiting for the next batch's first request gave.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per batch, moved straight into the batch"
)]
enum Waited {
    /// The request, and whether it came from the interactive lane.
    First(Pending, bool),
    /// A slot was taken or a lane closed: wait again.
    Again,
    /// Both lanes are closed and drained.
    Closed,
}

impl Batching {
    /// Takes a free slot or a first request: interactive first when a slot is free, bulk
    /// only with a shared slot, and an overdue bulk request ahead of all.
    async fn next_first(&mut self) -> Waited {
        let held = &mut self.held;
        let can_run = held.reserved.is_some() || held.shared.is_some();
        if self.streak >= FAIR_STREAK
            && held.shared.is_some()
            && let Ok(pending) = self.lanes.bulk.try_recv()
        {
            return Waited::First(pending, false);
        }
        tokio::select! {
            biased;
            Ok(permit) = Arc::clone(&self.slots.reserved).acquire_owned(), if held.reserved.is_none() => {
                held.reserved = Some(permit);
                Waited::Again
            }
            Ok(permit) = Arc::clone(&self.slots.shared).acquire_owned(), if held.shared.is_none() => {
                held.shared = Some(permit);
                Waited::Again
            }
            next = self.lanes.interactive.recv(), if self.interactive_open && can_run => match next {
                Some(pending) => Waited::First(pending, true),
                None => {
                    self.interactive_open = false;
                    Waited::Again
                }
            },
            next = self.lanes.bulk.recv(), if self.bulk_open && held.shared.is_some() => match next {
                Some(pending) => Waited::First(pending, false),
                None => {
                    self.bulk_open = false;
                    Waited::Again
                }
            },
            else => Waited::Closed,
        }
    }

    /// The batch `first` starts, and the slot it runs in: a free reserved thread takes an
    /// interactive request with what is queued behind it; otherwise a shared slot's batch
    /// is filled for up to `max_wait`.
    async fn form(&mut self, first: Pending, is_interactive: bool) -> (Option<Slot>, Vec<Pending>) {
        let held = &mut self.held;
        match (is_interactive, held.reserved.take()) {
            (true, Some(permit)) => {
                let slot = Some(Slot::new(permit, Threads::Reserved));
                (
                    slot,
                    interactive_batch(&mut self.lanes, first, self.max_batch),
                )
            }
            (_, reserved) => {
                held.reserved = reserved;
                // Always held here (the select's conditions); without one the batch would
                // still run, waiting in the pool's queue for a shared thread.
                let slot = held.shared.take().map(|p| Slot::new(p, Threads::Shared));
                // While a reserved thread is free, interactive requests wait for it
                // (at most `max_wait`) rather than join a bulk batch.
                let fill = Fill {
                    max_batch: self.max_batch,
                    deadline: Instant::now() + self.max_wait,
                    interactive: held.reserved.is_none(),
                };
                let (batch, bulk) = fill.run(&mut self.lanes, (first, is_interactive)).await;
                self.streak = if bulk > 0 { 0 } else { self.streak + 1 };
                (slot, batch)
            }
        }
    }
}

/// `first` and the interactive requests already queued behind it: a reserved thread's
/// batch waits for nothing (while it was busy its lane's requests accumulated).
fn interactive_batch(lanes: &mut Lanes, first: Pending, max_batch: usize) -> Vec<Pending> {
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match lanes.interactive.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(_) => break,
        }
    }
    batch
}

/// How a shared thread's batch is filled.
struct Fill {
    max_batch: usize,
    deadline: Instant,
    /// Whether interactive requests may join.
    interactive: bool,
}

impl Fill {
    /// `first` and what is queued, interactive first up to three quarters of the batch
    /// while bulk requests wait, waiting until `deadline` for more; and how many of them are
    /// bulk requests.
    async fn run(&self, lanes: &mut Lanes, first: Next) -> (Vec<Pending>, usize) {
        let cap = (self.max_batch * 3 / 4).max(1);
        let mut interactive = usize::from(first.1);
        let mut batch = vec![first.0];
        while batch.len() < self.max_batch {
            let first_lane = self.interactive && interactive < cap;
            let next = match lanes.ready(first_lane, self.interactive) {
                Some(next) => Some(next),
                None => tokio::time::timeout_at(self.deadline, lanes.next(self.interactive))
                    .await
                    .ok()
                    .flatten(),
            };
            let Some((pending, is_interactive)) = next else {
                break;
            };
            interactive += usize::from(is_interactive);
            batch.push(pending);
        }
        let bulk = batch.len() - interactive;
        (batch, bulk)
    }
}
