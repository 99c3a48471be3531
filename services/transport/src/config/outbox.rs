//! The outbox: moderation requests on their way to JetStream while NATS is slow or down.

use super::defaults;
use clap::Args;
use offpath_ops::cli::Millis;

/// The outbox: moderation requests on their way to JetStream while NATS is slow or down.
#[derive(Debug, Clone, Args)]
pub struct OutboxConfig {
    /// Moderation requests held while NATS is slow or down; past it requests are shed
    /// (counted) and the room's failure policy applies.
    #[arg(long, env = "OFFPATH_OUTBOX_CAPACITY", default_value_t = defaults::OUTBOX_CAPACITY)]
    pub outbox_capacity: usize,
    /// JetStream publishes awaiting their acknowledgement at once (pipelining).
    #[arg(long, env = "OFFPATH_OUTBOX_IN_FLIGHT", default_value_t = defaults::OUTBOX_IN_FLIGHT)]
    pub outbox_in_flight: usize,
    /// How long shutdown spends flushing the outbox to NATS.
    #[arg(long = "flush-grace-ms", env = "OFFPATH_FLUSH_GRACE_MS", default_value_t = Millis::new(defaults::FLUSH_GRACE_MS))]
    pub flush_grace: Millis,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            outbox_capacity: defaults::OUTBOX_CAPACITY,
            outbox_in_flight: defaults::OUTBOX_IN_FLIGHT,
            flush_grace: Millis::new(defaults::FLUSH_GRACE_MS),
        }
    }
}
