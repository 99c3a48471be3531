//! offpath's one self-healing JetStream pull consumer, shared by the moderator (its
//! `moderator` consumers on `MODERATION` and `MODERATION_INTERACTIVE`) and the transport
//! (its `transport-<tenant>-<instance>` consumer on `VERDICTS`).
//!
//! [`Consumer::next`] is the whole interface: it hands out the next message of a durable
//! pull consumer and heals what lies underneath on the way:
//!
//! * **bind** (`bind`): look the stream and consumer up (within a short timeout: while a
//!   cluster elects a leader, API requests go unanswered until the context's own 10 s);
//!   when either is missing (never created, deleted by hand, a lost cluster volume), put
//!   back what is missing with [`ensure`] (never changing what exists) and look
//!   again; then start a continuous pull with idle heartbeats. A failed bind is tried
//!   again with a backoff; after [`Settings::give_up_after`] [`next`](Consumer::next)
//!   returns [`GaveUp`].
//! * **pull** (`pulls`): a pull request waits at the consumer's leader; when that leader
//!   dies the request dies with it and nothing tells the client, whose heartbeats stop. Two
//!   missed heartbeats start a new pull on the same consumer, and the replaced one is still
//!   read until its last request has surely expired (a process thawed after a freeze misses
//!   heartbeats too, before it reads what the server sent meanwhile).
//! * **heal** (`consumer`): "no responders" while a cluster fails over is waited out for a
//!   grace; a deleted consumer, a refused pull or a consumer that can no longer be looked
//!   up is *lost*, and bound again. A silent pull's consumer is looked up too: one that
//!   vanished while no pull waited to hear it is lost at the first silence.
//!
//! The library decides nothing about what a message becomes, and counts nothing: each
//! service's [`Hooks`] turn its events (bound, unbound, lost, pulled again, drift) into
//! that service's metrics, readiness and log lines.
//!
//! [`ensure`]: offpath_protocol::topology::ensure

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod bind;
mod consumer;
mod pulls;

use std::time::Duration;

use async_nats::jetstream::consumer::{Info, pull};
use offpath_protocol::topology::{Drift, TopologyConfig};

pub use bind::Unbound;
pub use consumer::{Consumer, GaveUp};

/// Which consumer to bind, and what puts it back when it is gone.
#[derive(Debug, Clone)]
pub struct Target {
    /// The stream, e.g. `MODERATION`.
    pub stream: String,
    /// The durable consumer's name on it.
    pub consumer: String,
    /// What [`ensure`](offpath_protocol::topology::ensure) creates when the stream (or a
    /// consumer it owns) is missing.
    pub topology: TopologyConfig,
}

/// How the consumer pulls and how long it keeps trying to bind. [`Default`] is what both
/// services run with; tests shorten or lengthen single fields.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Messages asked for per pull request (`None`: async-nats's default, within the
    /// consumer's `max_batch`).
    pub batch: Option<usize>,
    /// How long one pull request waits at the server; a new one follows at once. Also the
    /// longest a lost request goes unnoticed if heartbeats were somehow still coming.
    pub expires: Duration,
    /// The server's idle heartbeat on a pull. Two missed in a row (async-nats's rule) and a
    /// new pull starts. At most half of `expires` (the server's rule).
    pub heartbeat: Duration,
    /// How long binding may fail before [`Consumer::next`] gives up (`None`: never). A
    /// process that cannot bind should rather exit than idle while looking alive.
    pub give_up_after: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: None,
            expires: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
            give_up_after: None,
        }
    }
}

impl Settings {
    /// How long a replaced pull is still read: its last request expires within `expires`,
    /// and what the server sent before that arrives well within two heartbeats.
    fn retire_after(&self) -> Duration {
        self.expires + 2 * self.heartbeat
    }
}

/// Why a new pull replaced the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullAgain {
    /// The pull missed two heartbeats: its request died with a consumer leader, or the
    /// process was frozen. The replaced pull is still read for a while.
    Silent,
    /// No consumer leader answered the pull ("no responders"), within the failover grace.
    Leaderless,
}

/// What a service does when its consumer's state changes: its metrics, its readiness, its
/// log lines. Every method has a default that does nothing. The library logs its own
/// healing (a lost consumer, a pull replaced, a bind retried) at `warn`, with the stream and
/// the consumer.
pub trait Hooks {
    /// The settings to create the consumer with when it does not exist (then looked up with
    /// `get_or_create`). `None` (the default): the consumer belongs to the topology and
    /// [`ensure`](offpath_protocol::topology::ensure) creates it. Asked at every bind, so it
    /// may change (the transport starts a re-created consumer at the last verdict it saw).
    fn create_config(&mut self) -> Option<pull::Config> {
        None
    }

    /// The consumer is bound and pulled. `info` is its info as the bind read it (before
    /// this process pulled); `again` is false at the first bind of this [`Consumer`].
    fn bound(&mut self, info: &Info, again: bool) {
        let _ = (info, again);
    }

    /// A bind failed; the next attempt follows after a backoff.
    fn unbound(&mut self, reason: &Unbound) {
        let _ = reason;
    }

    /// The bound consumer was lost (deleted, its stream deleted, pulls refused); binding
    /// again follows at once.
    fn lost(&mut self, reason: &Unbound) {
        let _ = reason;
    }

    /// A new pull replaced the current one.
    fn pulled_again(&mut self, why: PullAgain) {
        let _ = why;
    }

    /// A pull reported an error that is not (yet) a lost consumer; pulling goes on.
    fn pull_error(&mut self, error: &pull::MessagesError) {
        let _ = error;
    }

    /// A setting of the existing topology differs from [`Target::topology`]; it is left as
    /// it is (`offpath topology` owns settings).
    fn drift(&mut self, drift: &Drift) {
        let _ = drift;
    }
}
