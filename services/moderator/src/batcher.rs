//! Batches from the two lanes' queues: the interactive lane first, never starving bulk.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::pipeline::{Pending, Shared, process};

/// The two lanes' queues of decoded requests.
pub(crate) struct Lanes {
    /// Requests someone waits for (hold rooms): taken first.
    pub(crate) interactive: mpsc::Receiver<Pending>,
    /// Everything else, and synchronous calls.
    pub(crate) bulk: mpsc::Receiver<Pending>,
}

impl Lanes {
    /// The next request, the interactive lane's first; `None` once both are closed.
    async fn next(&mut self) -> Option<(Pending, bool)> {
        tokio::select! {
            biased;
            Some(pending) = self.interactive.recv() => Some((pending, true)),
            Some(pending) = self.bulk.recv() => Some((pending, false)),
            else => None,
        }
    }

    /// A request that is already queued: interactive first while `interactive_room`, then
    /// bulk, then interactive again (when no bulk request waits, nothing is starved).
    fn ready(&mut self, interactive_room: bool) -> Option<(Pending, bool)> {
        let interactive = |lanes: &mut Self| lanes.interactive.try_recv().ok().map(|p| (p, true));
        let first = if interactive_room {
            interactive(self)
        } else {
            None
        };
        first
            .or_else(|| self.bulk.try_recv().ok().map(|p| (p, false)))
            .or_else(|| interactive(self))
    }
}

/// Collects pending requests into batches: waits for a free inference slot first, so that
/// while every thread is busy requests accumulate and the next batch is fuller; then takes
/// what is queued, the interactive lane's first (up to three quarters of a batch while bulk
/// requests wait, so a flood of interactive requests cannot starve the bulk lane), waiting
/// at most `max_wait` for more.
pub(crate) async fn batcher(
    shared: Arc<Shared>,
    mut lanes: Lanes,
    slots: Arc<Semaphore>,
    max_batch: usize,
    max_wait: Duration,
) {
    let interactive_cap = (max_batch * 3 / 4).max(1);
    let mut running = JoinSet::new();
    while let Some((first, first_interactive)) = lanes.next().await {
        let arrived = tokio::time::Instant::now();
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let mut batch = vec![first];
        let mut interactive = usize::from(first_interactive);
        while batch.len() < max_batch {
            let next = match lanes.ready(interactive < interactive_cap) {
                Some(next) => Some(next),
                None => tokio::time::timeout_at(arrived + max_wait, lanes.next())
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
        let shared = Arc::clone(&shared);
        running.spawn(async move {
            process(shared, batch, Some(slot)).await;
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}
