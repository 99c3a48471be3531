//! The gateway's tasks besides HTTP: the outbox drain (the only publisher to NATS), the
//! verdict consumer and the hold deadlines, started together and stopped in order.

use std::sync::Arc;

use offpath_protocol::ModerationRequest;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::hub::Hub;
use crate::{outbox, verdicts};

/// The running tasks.
pub(crate) struct Background {
    stop: watch::Sender<bool>,
    drain: JoinHandle<()>,
    consumer: JoinHandle<()>,
    holds: JoinHandle<()>,
    /// Whether the verdict consumer is bound (for `/readyz`).
    pub(crate) binding: Arc<verdicts::Binding>,
}

impl Background {
    /// Starts draining `outbox` to NATS over `client`, consuming verdicts for `hub` and
    /// releasing its held messages at their deadlines.
    pub(crate) fn start(
        hub: &Arc<Hub>,
        client: &async_nats::Client,
        outbox: mpsc::Receiver<ModerationRequest>,
    ) -> Self {
        let grace = hub.config().outbox.flush_grace.get();
        let js = async_nats::jetstream::new(client.clone());
        let (stop, stop_rx) = watch::channel(false);
        let drain = tokio::spawn(outbox::drain(
            js.clone(),
            Arc::clone(hub),
            outbox,
            stop_rx.clone(),
            grace,
        ));
        let binding = Arc::new(verdicts::Binding::default());
        let consumer = tokio::spawn(verdicts::consume(
            js,
            Arc::clone(hub),
            Arc::clone(&binding),
            stop_rx,
        ));
        let holds = tokio::spawn(Arc::clone(hub).hold_deadlines());
        Self {
            stop,
            drain,
            consumer,
            holds,
            binding,
        }
    }

    /// Flushes the outbox (up to `outbox.flush_grace`), stops the verdict consumer, then the
    /// hold deadlines.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.drain.await;
        let _ = self.consumer.await;
        self.holds.abort();
    }
}
