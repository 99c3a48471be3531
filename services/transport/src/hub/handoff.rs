//! The send path's end of the outbox: the hub hands requests over here without waiting; the
//! outbox task (`crate::outbox`) on the other end is the only thing that waits on NATS. The
//! hub owns this handle, so it needs nothing of the outbox.

use std::sync::atomic::{AtomicI64, Ordering};

use offpath_protocol::ModerationRequest;
use tokio::sync::mpsc;

use crate::metrics as m;

/// The send path's end of the outbox: hands requests over without waiting and keeps count
/// of those not yet stored in JetStream.
#[derive(Debug)]
pub(crate) struct Handoff {
    tx: mpsc::Sender<ModerationRequest>,
    depth: AtomicI64,
}

impl Handoff {
    /// Hands requests to `tx`, the outbox ([`crate::outbox::drain`]) empties.
    pub(crate) fn new(tx: mpsc::Sender<ModerationRequest>) -> Self {
        Self {
            tx,
            depth: AtomicI64::new(0),
        }
    }

    /// Hands `request` over, or sheds it (counted) and returns why: `full` or `shutdown`.
    pub(crate) fn try_hand(&self, request: ModerationRequest) -> Result<(), &'static str> {
        let reason = match self.tx.try_send(request) {
            Ok(()) => {
                let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::gauge!(m::OUTBOX_DEPTH).set(depth as f64);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Full(_)) => "full",
            Err(mpsc::error::TrySendError::Closed(_)) => "shutdown",
        };
        metrics::counter!(m::OUTBOX_SHED, "reason" => reason).increment(1);
        Err(reason)
    }

    /// `n` requests were stored (or finally shed).
    pub(crate) fn settled(&self, n: usize) {
        let depth = self.depth.fetch_sub(n as i64, Ordering::Relaxed) - n as i64;
        metrics::gauge!(m::OUTBOX_DEPTH).set(depth as f64);
    }

    /// Requests not yet stored in JetStream.
    pub(crate) fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }
}
