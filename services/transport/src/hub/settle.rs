//! Settling a message: the [`lifecycle`](super::lifecycle) decision under the tracker lock,
//! then its effects (metrics, the sender's verdict frame, delivery or retraction) after
//! the lock is released (accepting sends takes the same lock).

use std::sync::{Arc, Weak};
use std::time::Instant;

use offpath_protocol::Verdict;
use tracing::warn;

use super::lifecycle::{self, Effects, Event, Tracked, UNMODERATED_RETRACT};
use super::{Hub, lock};
use crate::frames::ServerFrame;
use crate::metrics as m;
use crate::peer::Peer;

/// Where the frames of a settled message go.
struct Route {
    room: String,
    sender: Arc<str>,
    sender_peer: Weak<Peer>,
    sent_at_ms: u64,
}

impl Hub {
    /// Applies a verdict from the moderator. Applying the same verdict twice changes
    /// nothing. False when it was refused as not bound to the text sent.
    pub(crate) fn apply_verdict(&self, verdict: Verdict) -> bool {
        let event = match &verdict.review {
            Some(review) => Event::Review {
                decision: review.decision,
                text: review.text.as_deref(),
                decided_at_ms: review.decided_at_ms,
            },
            None => Event::Verdict {
                action: verdict.action,
                reason: verdict.reason.as_deref(),
            },
        };
        self.settle(&verdict.id, &event, Some(&verdict))
    }

    /// The hold deadline of `id` passed: if it is still held, the room's failure policy
    /// decides.
    pub(crate) fn hold_deadline(&self, id: &str) {
        self.settle(id, &Event::HoldDeadline, None);
    }

    /// Settles message `id`. `verdict` gives room and sender when the message is unknown
    /// (forgotten, or accepted before this process restarted); a verdict not bound to the
    /// text sent ([`lifecycle::binding`]) is refused and changes nothing. The tracker lock
    /// covers the state change only; metrics are updated and frames encoded and queued
    /// after it is released (accepting sends takes the same lock). False when `verdict` was
    /// refused.
    pub(super) fn settle(&self, id: &str, event: &Event<'_>, verdict: Option<&Verdict>) -> bool {
        let now = Instant::now();
        // A restore delivers only the text the verdict judged.
        let unbound_text = match event {
            Event::Review {
                text: Some(text), ..
            } => verdict.is_none_or(|v| !v.judged(text)),
            _ => false,
        };
        if unbound_text {
            let route = verdict.map_or_else(Route::none, Route::of_verdict);
            let effects = Effects {
                refused: Some("digest_mismatch"),
                ..Effects::default()
            };
            self.apply(id, event, verdict, &route, effects);
            return false;
        }
        let tracked = lock(&self.tracker).get_mut(id).map(|tracked| {
            let digest = verdict.map(|v| v.text_sha256.as_deref());
            let refused = digest.and_then(|d| lifecycle::binding(d, Some(&tracked.text_sha256)));
            let effects = match refused {
                Some(reason) => Effects {
                    refused: Some(reason),
                    ..Effects::default()
                },
                None => lifecycle::settle(tracked, event, now),
            };
            (Route::of(tracked), effects)
        });
        // The lock is released here.
        let (route, effects) = match tracked {
            Some(settled) => settled,
            None => {
                let Some(verdict) = verdict else { return true };
                (
                    Route::of_verdict(verdict),
                    self.unknown_effects(id, event, verdict),
                )
            }
        };
        let bound = effects.refused.is_none();
        self.apply(id, event, verdict, &route, effects);
        bound
    }

    /// What a verdict for a message the tracker does not know does. Rooms live in one
    /// gateway: only a message this gateway accepted (its id carries this instance's name)
    /// can be on its clients' screens, forgotten by the tracker's bounds or accepted before
    /// a restart with the same `--instance`. Such a verdict is applied from its own fields:
    /// a block is retracted from whoever is in the room now. Another gateway's (or a
    /// forged) id is ignored: forwarding it would only let a verdict flood fill every
    /// member's send queue. Never remembered in the tracker: a flood must not push real
    /// messages out of it.
    fn unknown_effects(&self, id: &str, event: &Event<'_>, verdict: &Verdict) -> Effects {
        let mine = id
            .strip_prefix(self.config.instance.as_str())
            .is_some_and(|rest| rest.starts_with('.'));
        // Another gateway's id first: a flood of those is counted, never logged one by one.
        let refused = || lifecycle::binding(verdict.text_sha256.as_deref(), None);
        let ignored = if !mine {
            "not_ours"
        } else if let Some(reason) = refused() {
            return Effects {
                refused: Some(reason),
                ..Effects::default()
            };
        } else if !lock(&self.unknown).insert(&unknown_key(id, verdict)) {
            "duplicate"
        } else if let Event::Review { decision, .. } = event {
            return lifecycle::review_unknown(*decision);
        } else {
            let policy = self.policy(&verdict.room);
            return lifecycle::settle_unknown(verdict.action, policy.failure);
        };
        Effects {
            ignored: Some(ignored),
            ..Effects::default()
        }
    }

    /// Carries out `effects` of `event` on message `id`: metrics, then frames.
    fn apply(
        &self,
        id: &str,
        event: &Event<'_>,
        verdict: Option<&Verdict>,
        route: &Route,
        effects: Effects,
    ) {
        record(event, &effects);
        if let Some(reason) = effects.refused {
            warn!(
                id,
                reason, "refused a verdict not bound to the text this gateway sent"
            );
        }
        let room = &route.room;
        // The sending connection only: another page signed in as the same user (before or
        // after the sender left) must not learn the private outcome. Gone: nobody.
        if effects.notify_sender
            && let Some(peer) = route.sender_peer.upgrade().filter(|p| !p.is_closed())
        {
            let to_sender = ServerFrame::Verdict {
                id: id.to_string(),
                room: route.room.clone(),
                action: event.action().as_str().to_string(),
                scores: verdict.map(|v| v.scores.clone()).unwrap_or_default(),
                reason: event.reason().map(str::to_string),
                category: verdict.and_then(|v| v.category.clone()),
                // The page checks it fits its text; a score it could not print goes here.
                span: verdict
                    .and_then(|v| v.span)
                    .filter(|s| s.start < s.end && (0.0..=1.0).contains(&s.score)),
            }
            .encode();
            peer.push(&to_sender);
        }
        if let Some(text) = effects.deliver {
            let frame = crate::frames::encode_message(
                id,
                room,
                &route.sender,
                &text,
                route.sent_at_ms,
                None,
            );
            self.fan_out(room, &frame);
            let message = super::Shown::new(id, &route.sender, &text, route.sent_at_ms);
            self.released(room, message);
        }
        if let Some(reason) = effects.retract {
            lock(&self.recent).withdrawn(room, id);
            let frame = ServerFrame::Retract {
                id: id.to_string(),
                room: room.clone(),
                reason: reason.to_string(),
            };
            self.fan_out(room, &frame.encode());
        }
    }
}

impl Route {
    fn of(tracked: &Tracked) -> Self {
        Self {
            room: tracked.room.clone(),
            sender: Arc::clone(&tracked.sender),
            sender_peer: tracked.sender_peer.clone(),
            sent_at_ms: tracked.sent_at_ms,
        }
    }

    /// Nowhere: for effects that send no frame.
    fn none() -> Self {
        Self {
            room: String::new(),
            sender: "".into(),
            sender_peer: Weak::new(),
            sent_at_ms: 0,
        }
    }

    fn of_verdict(verdict: &Verdict) -> Self {
        Self {
            room: verdict.room.clone(),
            sender: verdict.sender.as_str().into(),
            sender_peer: Weak::new(),
            sent_at_ms: 0,
        }
    }
}

/// What a verdict for a message the tracker does not know is remembered by: the id (one
/// model verdict per message), or for a human verdict its key in `VERDICTS` (each decision
/// applies once, after the model's).
fn unknown_key(id: &str, verdict: &Verdict) -> String {
    match verdict.review {
        Some(_) => verdict.dedup_key(),
        None => id.to_string(),
    }
}

/// The metric updates of settling a message with `event`.
fn record(event: &Event<'_>, effects: &Effects) {
    if let Some(reason) = effects.ignored {
        metrics::counter!(m::VERDICTS_IGNORED, "reason" => reason).increment(1);
    }
    if let Some(reason) = effects.refused {
        metrics::counter!(m::VERDICTS_REFUSED, "reason" => reason).increment(1);
    }
    if let Some(outcome) = effects.hold_outcome {
        metrics::gauge!(m::HELD).decrement(1.0);
        metrics::counter!(m::HOLD_SETTLED, "outcome" => outcome).increment(1);
    }
    if let Some(decision) = effects.human {
        metrics::counter!(m::HUMAN_VERDICTS, "decision" => decision).increment(1);
    }
    if effects.count_verdict {
        metrics::counter!(m::VERDICTS, "action" => event.action().as_str()).increment(1);
    }
    if let Some(lag) = effects.lag {
        metrics::histogram!(m::VERDICT_LAG_SECONDS).record(lag.as_secs_f64());
    }
    if effects.retract == Some(UNMODERATED_RETRACT) {
        metrics::counter!(m::FAIL_CLOSED_RETRACTS).increment(1);
    }
}
