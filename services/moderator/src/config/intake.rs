//! Intake: what this process holds of the JetStream consumer, how it redelivers, when it reports a stall, and how long it tries to bind.

use clap::Args;
use offpath_ops::cli::Millis;

use super::defaults;

/// Intake: what this process holds of the JetStream consumer, how it redelivers, when it reports a stall, and how long it tries to bind.
#[derive(Debug, Clone, Args)]
pub struct IntakeConfig {
    /// Requests held (pulled, not yet acked) by this process; must not exceed the
    /// consumer's max_ack_pending.
    #[arg(long, env = "OFFPATH_MAX_IN_FLIGHT", default_value_t = defaults::MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Redelivery delay of a request whose batch failed or hung.
    #[arg(long = "nak-delay-ms", env = "OFFPATH_NAK_DELAY_MS", default_value_t = Millis::new(defaults::NAK_DELAY_MS))]
    pub nak_delay: Millis,
    /// `/readyz` turns not ready when requests are in flight and no inference finished for
    /// this long.
    #[arg(long = "stall-after-ms", env = "OFFPATH_STALL_AFTER_MS", default_value_t = Millis::new(defaults::STALL_AFTER_MS))]
    pub stall_after: Millis,
    /// How long the moderator keeps trying to (re-)bind its JetStream consumer, re-creating
    /// a deleted stream or consumer, before it gives up and exits with an error. Time
    /// disconnected from NATS counts too (binding fails meanwhile).
    #[arg(long = "rebind-give-up-ms", env = "OFFPATH_REBIND_GIVE_UP_MS", default_value_t = Millis::new(defaults::REBIND_GIVE_UP_MS))]
    pub rebind_give_up: Millis,
    /// Largest accepted request payload, in bytes.
    #[arg(long, env = "OFFPATH_MAX_REQUEST_BYTES", default_value_t = defaults::MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            max_in_flight: defaults::MAX_IN_FLIGHT,
            nak_delay: Millis::new(defaults::NAK_DELAY_MS),
            stall_after: Millis::new(defaults::STALL_AFTER_MS),
            rebind_give_up: Millis::new(defaults::REBIND_GIVE_UP_MS),
            max_request_bytes: defaults::MAX_REQUEST_BYTES,
        }
    }
}

impl IntakeConfig {
    /// Counts and times that must be at least 1.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        for (name, zero) in [
            ("--max-in-flight", self.max_in_flight == 0),
            ("--max-request-bytes", self.max_request_bytes == 0),
            ("--stall-after-ms", self.stall_after.is_zero()),
            ("--rebind-give-up-ms", self.rebind_give_up.is_zero()),
        ] {
            if zero {
                problems.push(format!("{name} must be at least 1"));
            }
        }
    }
}
