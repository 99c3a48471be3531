//! The bound consumer's delivery settings the line reads (how many deliveries a request
//! gets, how often a running batch reports progress), re-read at every (re-)bind. A leaf:
//! the consumer writes them, inference and settling read them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use offpath_protocol::topology::TopologyConfig;

/// The bound consumer's settings that the pipeline reads, re-read at every (re-)bind.
pub(crate) struct Settings {
    max_deliver: AtomicI64,
    progress_every_ms: AtomicU64,
}

impl Settings {
    /// Settings as `topology` would create the consumer, until one is bound.
    pub(crate) fn new(topology: &TopologyConfig) -> Self {
        let settings = Self {
            max_deliver: AtomicI64::new(i64::MAX),
            progress_every_ms: AtomicU64::new(0),
        };
        settings.adopt(topology.max_deliver, topology.ack_wait);
        settings
    }

    pub(crate) fn adopt(&self, max_deliver: i64, ack_wait: Duration) {
        let max_deliver = if max_deliver > 0 {
            max_deliver
        } else {
            i64::MAX
        };
        self.max_deliver.store(max_deliver, Ordering::Relaxed);
        // Often enough that a slow batch never reaches ack_wait (and gets redelivered).
        let every = (ack_wait / 3).max(Duration::from_millis(100));
        self.progress_every_ms
            .store(every.as_millis() as u64, Ordering::Relaxed);
    }

    /// Deliveries after which a failing request is dead-lettered.
    pub(crate) fn max_deliver(&self) -> i64 {
        self.max_deliver.load(Ordering::Relaxed)
    }

    /// How often a running batch tells JetStream its requests are being worked on.
    pub(crate) fn progress_every(&self) -> Duration {
        Duration::from_millis(self.progress_every_ms.load(Ordering::Relaxed))
    }
}
