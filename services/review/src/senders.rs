//! Each sender's recent verdicts as moderators and reviewers publish them, so a reviewer
//! sees beside an item what the model did with the sender's other messages seconds earlier
//! (issue 27: a reported message's card left out the sender's three auto-blocked insults,
//! which never reach the review queue unless a policy says `review_blocked`).
//!
//! Read from a plain subscription to `offpath.verdict.>` (every verdict as it is published;
//! nothing stored, so the record starts empty at each start), keeping only what is not
//! `allow`: blocks, flags, `unmoderated` verdicts and human decisions. Verdicts carry no
//! text, only what was decided and the scores. Bounded: `per_sender` verdicts of a sender,
//! the newest; `max_senders` senders **per tenant**, the ones first seen longest ago
//! forgotten first (counted), so one tenant's traffic never pushes out another's records.
//! Refused and counted: a message whose subject is not its verdict's own tenant and room,
//! or whose reply subject is not a publisher's inbox (a delivery the server made for a
//! redirected reply subject carries `$JS.ACK…` or nothing): only moderators and reviewers
//! may publish on verdict subjects, and they publish with an inbox to acknowledge to.

use std::collections::{HashMap, VecDeque};

use offpath_protocol::subject::verdict_subject;
use offpath_protocol::{Action, Verdict};
use serde::Serialize;

/// One verdict of a sender, as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Recent {
    /// The message's id.
    pub(crate) id: String,
    pub(crate) room: String,
    /// `block`, `flag`, `unmoderated`, or a reviewer's `block`/`allow`.
    pub(crate) action: &'static str,
    /// The two highest scores, highest first.
    pub(crate) top: Vec<(String, f32)>,
    /// When the console received it, ms since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The reviewer, for a human decision.
    pub(crate) reviewer: Option<String>,
}

/// What happened to a published verdict (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Kept in its sender's record.
    Kept,
    /// An `allow`: nothing to show.
    Allowed,
    /// Not a verdict, or published under another tenant's or room's subject.
    Refused,
}

impl Seen {
    pub(crate) const ALL: [&'static str; 3] = ["kept", "allowed", "refused"];

    pub(crate) fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }
}

type Key = (String, String);

/// The records, by tenant and sender.
#[derive(Debug)]
pub(crate) struct Senders {
    records: HashMap<Key, VecDeque<Recent>>,
    /// Per tenant, its senders in the order they were first seen (the oldest forgotten
    /// first).
    order: HashMap<String, VecDeque<String>>,
    max_senders: usize,
    per_sender: usize,
    forgotten: u64,
}

impl Senders {
    /// At most `max_senders` senders per tenant (0: keep nothing), `per_sender` verdicts
    /// each.
    pub(crate) fn new(max_senders: usize, per_sender: usize) -> Self {
        Self {
            records: HashMap::new(),
            order: HashMap::new(),
            max_senders,
            per_sender: per_sender.max(1),
            forgotten: 0,
        }
    }

    /// Whether anything is kept at all.
    pub(crate) fn enabled(&self) -> bool {
        self.max_senders > 0
    }

    /// Senders forgotten to stay within the bound.
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Senders with a record.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Takes in a message published on `subject` with `reply` at `at_ms`.
    pub(crate) fn record(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
        at_ms: u64,
    ) -> Seen {
        if !reply.is_some_and(|r| r.starts_with("_INBOX")) {
            return Seen::Refused;
        }
        let Ok(verdict) = serde_json::from_slice::<Verdict>(payload) else {
            return Seen::Refused;
        };
        if verdict_subject(&verdict.tenant, &verdict.room) != subject {
            return Seen::Refused;
        }
        if verdict.action == Action::Allow && verdict.review.is_none() {
            return Seen::Allowed;
        }
        if !self.enabled() {
            return Seen::Kept;
        }
        // The category that decided first (the highest scores are often signals: insult,
        // profanity), then the highest score besides it.
        let decided = verdict.category.as_deref();
        let mut top: Vec<(String, f32)> = verdict.scores.into_iter().collect();
        top.sort_by(|a, b| {
            let first = |k: &str| Some(k) == decided;
            first(&b.0).cmp(&first(&a.0)).then(b.1.total_cmp(&a.1))
        });
        top.truncate(2);
        let recent = Recent {
            id: verdict.id,
            room: verdict.room,
            action: verdict.action.as_str(),
            top,
            at_ms,
            reviewer: verdict.review.map(|r| r.reviewer),
        };
        let key = (verdict.tenant, verdict.sender);
        if !self.records.contains_key(&key) {
            let order = self.order.entry(key.0.clone()).or_default();
            while order.len() >= self.max_senders {
                let Some(oldest) = order.pop_front() else {
                    break;
                };
                self.records.remove(&(key.0.clone(), oldest));
                self.forgotten += 1;
            }
            order.push_back(key.1.clone());
        }
        let record = self.records.entry(key).or_default();
        // A verdict seen again (a redelivery, or a copy) replaces nothing: the first stays.
        if record
            .iter()
            .any(|r| r.id == recent.id && r.reviewer == recent.reviewer)
        {
            return Seen::Kept;
        }
        if record.len() >= self.per_sender {
            record.pop_front();
        }
        record.push_back(recent);
        Seen::Kept
    }

    /// `sender`'s record in `tenant`, newest first.
    pub(crate) fn recent(&self, tenant: &str, sender: &str) -> Vec<Recent> {
        self.records
            .get(&(tenant.to_string(), sender.to_string()))
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use offpath_protocol::encode;

    use super::*;

    fn verdict(id: &str, sender: &str, action: Action) -> Verdict {
        let mut verdict = sample(id, action);
        verdict.sender = sender.into();
        verdict
    }

    /// A verdict as a moderator publishes one.
    fn sample(id: &str, action: Action) -> Verdict {
        Verdict {
            v: 1,
            id: id.into(),
            tenant: "acme".into(),
            room: "lobby".into(),
            sender: "alice".into(),
            action,
            scores: [("insult".to_string(), 0.9), ("profanity".to_string(), 0.2)]
                .into_iter()
                .collect(),
            model: offpath_protocol::ModelRef {
                name: "m".into(),
                version: "1".into(),
            },
            queued_ms: 0,
            inference_ms: 0,
            reason: None,
            text_sha256: None,
            policy: None,
            review: None,
            category: None,
            span: None,
            rule: None,
            campaign: None,
            counts: None,
        }
    }

    const SUBJECT: &str = "offpath.verdict.acme.lobby";

    /// Blocks and flags are kept newest first, allows are not, a copy counts once, a
    /// redirected delivery and junk are refused, and the bounds hold.
    #[test]
    fn a_senders_recent_verdicts_are_kept_within_bounds() {
        let mut senders = Senders::new(2, 2);
        let v = |id, sender, action| encode(&verdict(id, sender, action));
        let inbox = Some("_INBOX_moderator.a.1");
        assert_eq!(
            senders.record(SUBJECT, inbox, &v("a", "alice", Action::Allow), 1),
            Seen::Allowed
        );
        for (id, at) in [("b", 2), ("c", 3), ("c", 4), ("d", 5)] {
            assert_eq!(
                senders.record(SUBJECT, inbox, &v(id, "alice", Action::Block), at),
                Seen::Kept
            );
        }
        let ids: Vec<String> = senders
            .recent("acme", "alice")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["d", "c"]);
        assert_eq!(senders.recent("acme", "alice")[0].top[0].0, "insult");
        assert_eq!(
            senders.record(
                "offpath.verdict.globex.lobby",
                inbox,
                &v("e", "alice", Action::Block),
                6
            ),
            Seen::Refused
        );
        assert_eq!(
            senders.record(SUBJECT, inbox, b"{\"type\":\"io.nats\"}", 7),
            Seen::Refused
        );
        // A delivery the server made for a redirected reply subject: not a publisher's.
        for reply in [Some("$JS.ACK.VERDICTS.transport-acme-gw1.1.2.3.4.5"), None] {
            assert_eq!(
                senders.record(SUBJECT, reply, &v("h", "alice", Action::Block), 7),
                Seen::Refused
            );
        }
        senders.record(SUBJECT, inbox, &v("f", "bob", Action::Flag), 8);
        senders.record(SUBJECT, inbox, &v("g", "carol", Action::Flag), 9);
        assert_eq!(senders.len(), 2);
        assert_eq!(senders.forgotten(), 1);
        assert!(
            senders.recent("acme", "alice").is_empty(),
            "first seen, first forgotten"
        );
        // Another tenant's senders have a bound of their own: acme's records stay.
        for (id, sender) in [("x", "dave"), ("y", "erin"), ("z", "frank")] {
            let mut other = verdict(id, sender, Action::Block);
            other.tenant = "globex".into();
            senders.record("offpath.verdict.globex.lobby", inbox, &encode(&other), 10);
        }
        assert_eq!(senders.recent("acme", "carol").len(), 1);
        assert_eq!(senders.recent("globex", "frank").len(), 1);
        let off = Senders::new(0, 10);
        assert!(!off.enabled());
    }
}
