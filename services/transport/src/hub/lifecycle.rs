//! The life of one accepted message, as a pure state machine: [`settle`] takes the
//! message's state and what happened to it (a verdict, a shed request, a hold deadline)
//! and returns the new state and the [`Effects`]. No lock, no metrics, no I/O: the hub
//! calls it under the tracker lock and applies the effects (frames, metric updates) after
//! releasing it.
//!
//! ```text
//!   Held ──allow/flag, or unmoderated in a fail-open room──▶ Delivered ──block──▶ Withdrawn
//!     └────block, or unmoderated in a fail-closed room──────────────────────────▶ Withdrawn
//! ```
//! A post room's message starts `Delivered`. A real verdict (or a shed request: no verdict
//! will come) is final, later copies are duplicates; a hold deadline is not: a later
//! verdict may still retract what the deadline delivered.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use offpath_protocol::{Action, ReviewDecision};

use crate::config::{Failure, RoomPolicy};
use crate::peer::Peer;

/// Where a message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Fanned out to the room.
    Delivered,
    /// In a `hold` room, not yet shown to anyone; keeps the text until released.
    Held {
        /// The text to deliver when allowed.
        text: String,
    },
    /// Retracted, dropped by a fail-closed room, or blocked while held.
    Withdrawn,
}

/// One accepted message.
#[derive(Debug)]
pub(crate) struct Tracked {
    /// Room.
    pub(crate) room: String,
    /// Sender's user name.
    pub(crate) sender: Arc<str>,
    /// The sender's connection (gone when it closed).
    pub(crate) sender_peer: Weak<Peer>,
    /// When the gateway accepted it, ms since the Unix epoch.
    pub(crate) sent_at_ms: u64,
    /// When the gateway accepted it (for the verdict lag).
    pub(crate) accepted: Instant,
    /// The room's policy at acceptance.
    pub(crate) policy: RoomPolicy,
    /// Delivery state.
    pub(crate) state: State,
    /// A final verdict was applied: later copies of it change nothing.
    pub(crate) settled: bool,
    /// `decided_at_ms` of the last reviewer decision applied: an older or equal one (a
    /// redelivered copy, a decision overtaken by a later one) changes nothing.
    pub(crate) reviewed_at_ms: u64,
    /// Lowercase hex SHA-256 of the text sent for moderation: a verdict must carry exactly
    /// this `text_sha256` to be applied.
    pub(crate) text_sha256: Box<str>,
}

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// The moderator's verdict (final).
    Verdict {
        /// What it says.
        action: Action,
        /// Why, when unmoderated.
        reason: Option<&'a str>,
    },
    /// The outbox shed the request: no verdict will come (final, unmoderated).
    Shed {
        /// Why (`outbox_full`, `outbox_shutdown`).
        reason: &'a str,
    },
    /// The hold deadline passed (unmoderated, not final).
    HoldDeadline,
    /// A reviewer's decision (a human verdict): applied whatever came before, and final.
    Review {
        /// `remove` or `restore` (the others publish no verdict and are ignored).
        decision: ReviewDecision,
        /// On `restore`, the text to deliver (bound to the message by the caller).
        text: Option<&'a str>,
        /// When it was decided: only a later decision than the last applied one applies.
        decided_at_ms: u64,
    },
}

impl<'a> Event<'a> {
    /// The action the sender is told.
    pub(crate) fn action(&self) -> Action {
        match self {
            Event::Verdict { action, .. } => *action,
            Event::Shed { .. } | Event::HoldDeadline => Action::Unmoderated,
            Event::Review { decision, .. } => decision.action().unwrap_or(Action::Allow),
        }
    }

    /// The reason the sender is told.
    pub(crate) fn reason(&self) -> Option<&'a str> {
        match self {
            Event::Verdict { reason, .. } => *reason,
            Event::Shed { reason } => Some(reason),
            Event::HoldDeadline => Some(HOLD_DEADLINE),
            Event::Review { decision, .. } => Some(review_reason(*decision)),
        }
    }

    /// Whether later events for the message are duplicates.
    fn is_final(&self) -> bool {
        !matches!(self, Event::HoldDeadline)
    }
}

/// The reason a sender is told, and the retract reason, of a reviewer's decision.
fn review_reason(decision: ReviewDecision) -> &'static str {
    match decision {
        ReviewDecision::Remove => "removed",
        ReviewDecision::Restore => "restored",
        ReviewDecision::Dismiss | ReviewDecision::Escalate => "reviewed",
    }
}

/// The reason of a hold deadline's `unmoderated`.
const HOLD_DEADLINE: &str = "hold_deadline";
/// Why an unmoderated message leaves a fail-closed room.
pub(crate) const UNMODERATED_RETRACT: &str = "unmoderated";

/// What settling a message does, applied by the caller once the lock is released.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Not applied: counted as an ignored verdict with this reason; nothing else happens.
    pub(crate) ignored: Option<&'static str>,
    /// Not applied, not bound to the message (see [`binding`]): counted as a refused
    /// verdict with this reason and logged; nothing else happens.
    pub(crate) refused: Option<&'static str>,
    /// Tell the sender the outcome (a `verdict` frame).
    pub(crate) notify_sender: bool,
    /// Deliver this held text to the room now.
    pub(crate) deliver: Option<String>,
    /// Retract the message from the room, with this reason.
    pub(crate) retract: Option<&'static str>,
    /// The message left the hold, with this outcome.
    pub(crate) hold_outcome: Option<&'static str>,
    /// Count the verdict by its action.
    pub(crate) count_verdict: bool,
    /// From acceptance to the verdict.
    pub(crate) lag: Option<Duration>,
    /// A reviewer's decision was applied (`remove`, `restore`).
    pub(crate) human: Option<&'static str>,
}

/// Settles `tracked` with `event` at `now`: updates its state, returns what to do.
pub(crate) fn settle(tracked: &mut Tracked, event: &Event<'_>, now: Instant) -> Effects {
    if let Event::Review {
        decision,
        text,
        decided_at_ms,
    } = event
    {
        if *decided_at_ms <= tracked.reviewed_at_ms {
            return Effects {
                ignored: Some("duplicate"),
                ..Effects::default()
            };
        }
        tracked.reviewed_at_ms = *decided_at_ms;
        return review(tracked, *decision, *text);
    }
    if *event == Event::HoldDeadline && !matches!(tracked.state, State::Held { .. }) {
        // Released or dropped before its deadline came.
        return Effects::default();
    }
    if tracked.settled {
        return Effects {
            ignored: Some("duplicate"),
            ..Effects::default()
        };
    }
    let withdraw = withdrawal(event.action(), tracked.policy.failure);
    let mut effects = Effects {
        notify_sender: true,
        ..Effects::default()
    };
    match &mut tracked.state {
        State::Held { text } => {
            let text = std::mem::take(text);
            effects.hold_outcome = Some(hold_outcome(event, withdraw.is_none()));
            tracked.state = match withdraw {
                None => {
                    effects.deliver = Some(text);
                    State::Delivered
                }
                Some(_) => State::Withdrawn,
            };
        }
        State::Delivered if withdraw.is_some() => {
            tracked.state = State::Withdrawn;
            effects.retract = withdraw;
        }
        State::Delivered | State::Withdrawn => {}
    }
    if event.is_final() {
        tracked.settled = true;
        if let Event::Verdict { .. } = event {
            effects.count_verdict = true;
            if tracked.sent_at_ms > 0 {
                effects.lag = Some(now.saturating_duration_since(tracked.accepted));
            }
        }
    }
    effects
}

/// A reviewer's decision on `tracked`, whatever verdict came before: `remove` takes it out
/// of the room (retracted, or never shown when held), `restore` shows it (the held text, or
/// `text` when it was withdrawn). Afterwards the message is settled: a model verdict still
/// on its way changes nothing.
fn review(tracked: &mut Tracked, decision: ReviewDecision, text: Option<&str>) -> Effects {
    let mut effects = Effects {
        notify_sender: true,
        human: Some(decision.as_str()),
        ..Effects::default()
    };
    let reason = review_reason(decision);
    let held = matches!(tracked.state, State::Held { .. });
    match (decision, &mut tracked.state) {
        (ReviewDecision::Remove, State::Held { text }) => {
            std::mem::take(text);
            tracked.state = State::Withdrawn;
        }
        (ReviewDecision::Remove, State::Delivered) => {
            tracked.state = State::Withdrawn;
            effects.retract = Some(reason);
        }
        (ReviewDecision::Restore, State::Held { text }) => {
            effects.deliver = Some(std::mem::take(text));
            tracked.state = State::Delivered;
        }
        (ReviewDecision::Restore, State::Withdrawn) => match text {
            Some(text) => {
                effects.deliver = Some(text.to_string());
                tracked.state = State::Delivered;
            }
            None => {
                return Effects {
                    ignored: Some("restore_without_text"),
                    ..Effects::default()
                };
            }
        },
        (ReviewDecision::Remove, State::Withdrawn)
        | (ReviewDecision::Restore, State::Delivered) => {}
        (ReviewDecision::Dismiss | ReviewDecision::Escalate, _) => {
            return Effects::default();
        }
    }
    if held {
        effects.hold_outcome = Some(reason);
    }
    tracked.settled = true;
    effects
}

/// What a reviewer's decision does to a message this gateway does not track (forgotten,
/// or accepted before a restart): `remove` retracts it from the room. `restore` is ignored
/// (`restore_untracked`): without the message's own record, its text, sender and room come
/// from the verdict alone, and a verdict publisher could show any text as anyone.
pub(crate) fn review_unknown(decision: ReviewDecision) -> Effects {
    match decision {
        ReviewDecision::Remove => Effects {
            retract: Some(review_reason(decision)),
            human: Some(decision.as_str()),
            ..Effects::default()
        },
        ReviewDecision::Restore => Effects {
            ignored: Some("restore_untracked"),
            ..Effects::default()
        },
        ReviewDecision::Dismiss | ReviewDecision::Escalate => Effects::default(),
    }
}

/// Why a verdict claiming to judge a message whose text has digest `sent` (`None`: the
/// gateway no longer tracks it, so only presence can be checked) is refused, if it is:
/// it carries no `text_sha256` (`missing_digest`), or another one (`digest_mismatch`).
/// Refusing leaves the message as it is: the real verdict may still come, and otherwise
/// the hold deadline or the room's failure policy decides, as for any missing verdict.
pub(crate) fn binding(verdict_digest: Option<&str>, sent: Option<&str>) -> Option<&'static str> {
    match (verdict_digest, sent) {
        (None, _) => Some("missing_digest"),
        (Some(digest), Some(sent)) if digest != sent => Some("digest_mismatch"),
        (Some(_), _) => None,
    }
}

/// What a verdict with `action` does to a message this gateway does not track, in a room
/// whose unmoderated messages `failure` decides: tell the sender, retract if it must go.
pub(crate) fn settle_unknown(action: Action, failure: Failure) -> Effects {
    Effects {
        notify_sender: true,
        retract: withdrawal(action, failure),
        count_verdict: true,
        ..Effects::default()
    }
}

/// The retract reason when a delivered message with this verdict must go (held, it is
/// never shown): a block, or no verdict in a fail-closed room. `None`: it stays (or, held,
/// is delivered).
fn withdrawal(action: Action, failure: Failure) -> Option<&'static str> {
    match (action, failure) {
        (Action::Block, _) => Some("blocked"),
        (Action::Unmoderated, Failure::Closed) => Some(UNMODERATED_RETRACT),
        (Action::Allow | Action::Flag | Action::Unmoderated, _) => None,
    }
}

/// The `outcome` of a held message leaving the hold (delivered or not).
fn hold_outcome(event: &Event<'_>, delivered: bool) -> &'static str {
    match (event.action(), delivered, event) {
        (Action::Allow, _, _) => "allowed",
        (Action::Flag, _, _) => "flagged",
        (Action::Block, _, _) => "blocked",
        (_, true, Event::HoldDeadline) => "deadline_delivered",
        (_, false, Event::HoldDeadline) => "deadline_dropped",
        (_, true, _) => "unmoderated_delivered",
        (_, false, _) => "unmoderated_dropped",
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
