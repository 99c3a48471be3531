//! The unit of work that moves down the moderator's line (intake → batcher → inference →
//! settle): a decoded request and where it came from ([`Pending`]), and what settling one
//! takes ([`Settled`]). A leaf: it imports no stage.

use async_nats::jetstream;
use offpath_protocol::{Action, ModerationRequest, ReviewItem, Verdict};

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
    /// A text rule that matched and let the models run (`then = "models"`).
    pub(crate) note: Option<RuleNote>,
    pub(crate) _held: Held,
}

/// What the rules stage made of a request.
pub(crate) enum Screened {
    /// No rule matched (or only shadow rules): the models judge it.
    Passed,
    /// A rule decided: this is the verdict, no model runs.
    Decided(Box<Verdict>),
    /// A rule matched and lets the models run: their verdict is at least the rule's.
    Noted(RuleNote),
}

/// A text rule that matched and let the models run: the least the verdict will be.
#[derive(Debug, Clone)]
pub(crate) struct RuleNote {
    /// The rule's name.
    pub(crate) rule: String,
    /// Its action: the verdict is at least this.
    pub(crate) action: Action,
    /// The category the verdict names when the rule's action prevails.
    pub(crate) category: Option<String>,
}

impl RuleNote {
    /// `verdict` with this rule's action when it is more severe than the models' (an
    /// `unmoderated` verdict counts as less severe than a flag): the rule is then named.
    pub(crate) fn apply(note: Option<&Self>, mut verdict: Verdict) -> Verdict {
        let rank = |a: Action| match a {
            Action::Unmoderated | Action::Allow => 0,
            Action::Flag => 1,
            Action::Block => 2,
        };
        if let Some(note) = note
            && rank(note.action) > rank(verdict.action)
        {
            verdict.action = note.action;
            verdict.category = note.category.clone();
            verdict.rule = Some(note.rule.clone());
            verdict.reason = None;
            verdict.span = None;
        }
        verdict
    }
}

/// A request's verdict, and its review-queue item when it has one: what settling takes.
pub(crate) struct Settled {
    pub(crate) origin: Origin,
    pub(crate) verdict: Verdict,
    pub(crate) review: Option<ReviewItem>,
}
