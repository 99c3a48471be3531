//! The unit of work that moves down the moderator's line (intake → batcher → inference →
//! settle): a decoded request and where it came from ([`Pending`]), and what settling one
//! takes ([`Settled`]). A leaf: it imports no stage.

use async_nats::jetstream;
use offpath_protocol::{ModerationRequest, ReviewItem, Verdict};

use crate::readiness::Held;

/// Where a request came from, and so how it is answered.
pub(crate) enum Origin {
    /// Pulled from `MODERATION`: the verdict is published, then the request acked.
    Stream(Box<jetstream::Message>),
    /// A synchronous `offpath.classify` call: the verdict goes back to the caller only.
    Direct(tokio::sync::oneshot::Sender<Verdict>),
}

/// A decoded request waiting for inference. `Held` bounds requests in flight and times
/// stalls; it is released when the request is settled.
pub(crate) struct Pending {
    pub(crate) origin: Origin,
    pub(crate) request: ModerationRequest,
    pub(crate) deliveries: i64,
    pub(crate) _held: Held,
}

/// A request's verdict, and its review-queue item when it has one: what settling takes.
pub(crate) struct Settled {
    pub(crate) origin: Origin,
    pub(crate) verdict: Verdict,
    pub(crate) review: Option<ReviewItem>,
}
