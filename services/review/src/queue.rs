//! The review queue as reviewers see it: every item of `REVIEW` with the decisions of
//! `AUDIT` on it, rebuilt from both streams at start and followed while the service runs
//! (so several consoles, or a restarted one, agree).

use std::collections::BTreeMap;

use offpath_protocol::{HumanReview, ReviewDecision, ReviewItem};
use serde::Serialize;

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Nobody decided yet.
    Open,
    /// Passed to a senior reviewer: still open.
    Escalated,
    /// Removed, restored or dismissed.
    Decided,
}

/// One queued message and what reviewers decided on it, oldest first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    /// The item's key (its `Nats-Msg-Id`): what a decision names.
    pub(crate) key: String,
    pub(crate) item: ReviewItem,
    pub(crate) decisions: Vec<HumanReview>,
    pub(crate) status: Status,
}

/// Every item, by key.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    entries: BTreeMap<String, Entry>,
}

impl Queue {
    /// Adds an item from `REVIEW` (a copy of one already known changes nothing).
    pub(crate) fn add(&mut self, item: ReviewItem) {
        let key = item.dedup_key();
        self.entries.entry(key.clone()).or_insert(Entry {
            key,
            item,
            decisions: Vec::new(),
            status: Status::Open,
        });
    }

    /// Records a decision on item `key` (from `AUDIT`, or just made here: the same decision
    /// seen twice is recorded once). An item not seen yet is added from the audit entry.
    pub(crate) fn record(&mut self, item: &ReviewItem, review: &HumanReview) {
        self.add(item.clone());
        let Some(entry) = self.entries.get_mut(&item.dedup_key()) else {
            return;
        };
        if entry.decisions.contains(review) {
            return;
        }
        entry.decisions.push(review.clone());
        entry.decisions.sort_by_key(|d| d.decided_at_ms);
        entry.status = entry
            .decisions
            .last()
            .map_or(Status::Open, |d| match d.decision {
                ReviewDecision::Escalate => Status::Escalated,
                _ => Status::Decided,
            });
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The entries `filter` keeps, oldest first.
    pub(crate) fn list(&self, filter: &Filter) -> Vec<&Entry> {
        let mut list: Vec<&Entry> = self.entries.values().filter(|e| filter.keeps(e)).collect();
        list.sort_by_key(|e| (e.item.queued_at_ms, e.key.clone()));
        list
    }

    /// Items nobody decided yet (escalated ones included), and the oldest one's queue time.
    pub(crate) fn open(&self) -> (usize, Option<u64>) {
        let open = self
            .entries
            .values()
            .filter(|e| e.status != Status::Decided);
        open.fold((0, None), |(n, oldest), e| {
            let at = e.item.queued_at_ms;
            (n + 1, Some(oldest.map_or(at, |o: u64| o.min(at))))
        })
    }
}

/// What the console asks for.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// `open` (the default: open and escalated), `decided` or `all`.
    pub(crate) status: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) room: Option<String>,
    /// `flag` or `block`.
    pub(crate) kind: Option<String>,
}

impl Filter {
    fn keeps(&self, entry: &Entry) -> bool {
        let status = match self.status.as_deref().unwrap_or("open") {
            "all" => true,
            "decided" => entry.status == Status::Decided,
            _ => entry.status != Status::Decided,
        };
        let verdict = &entry.item.verdict;
        status
            && self.tenant.as_ref().is_none_or(|t| *t == verdict.tenant)
            && self.room.as_ref().is_none_or(|r| *r == verdict.room)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| k == entry.item.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use offpath_protocol::{Action, ModelRef, ReviewKind, Verdict};

    use super::*;

    fn item(id: &str, at: u64) -> ReviewItem {
        let verdict = Verdict {
            v: 1,
            id: id.into(),
            tenant: "acme".into(),
            room: "lobby".into(),
            sender: "alice".into(),
            action: Action::Flag,
            scores: BTreeMap::new(),
            model: ModelRef {
                name: "m".into(),
                version: "1".into(),
            },
            queued_ms: 0,
            inference_ms: 0,
            reason: None,
            text_sha256: Some(offpath_protocol::text_sha256("hi")),
            policy: None,
            review: None,
        };
        let mut item = ReviewItem::new(ReviewKind::Flag, &verdict, "hi", at);
        item.queued_at_ms = at;
        item
    }

    fn review(decision: ReviewDecision, at: u64) -> HumanReview {
        HumanReview {
            reviewer: "rita".into(),
            decision,
            decided_at_ms: at,
            note: None,
            text: None,
        }
    }

    /// Items are listed oldest first; a decision closes one, an escalation keeps it open,
    /// the same decision seen twice (made here, then read back from `AUDIT`) counts once.
    #[test]
    fn decisions_close_items_and_escalations_keep_them_open() {
        let mut queue = Queue::default();
        let (a, b) = (item("a", 20), item("b", 10));
        queue.add(a.clone());
        queue.add(b.clone());
        queue.add(a.clone());
        let ids = |q: &Queue, f: &Filter| -> Vec<String> {
            q.list(f)
                .iter()
                .map(|e| e.item.verdict.id.clone())
                .collect()
        };
        assert_eq!(ids(&queue, &Filter::default()), ["b", "a"]);
        assert_eq!(queue.open(), (2, Some(10)));
        queue.record(&b, &review(ReviewDecision::Escalate, 30));
        assert_eq!(queue.open(), (2, Some(10)), "escalated: still open");
        let remove = review(ReviewDecision::Remove, 40);
        queue.record(&b, &remove);
        queue.record(&b, &remove);
        assert_eq!(queue.open(), (1, Some(20)));
        let decided = Filter {
            status: Some("decided".into()),
            ..Filter::default()
        };
        assert_eq!(ids(&queue, &decided), ["b"]);
        assert_eq!(
            queue.get(&b.dedup_key()).map(|e| e.decisions.len()),
            Some(2)
        );
        let flags = Filter {
            status: Some("all".into()),
            kind: Some("block".into()),
            ..Filter::default()
        };
        assert!(ids(&queue, &flags).is_empty());
    }
}
