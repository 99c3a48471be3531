//! The review queue as reviewers see it: every item of `REVIEW` with the decisions of
//! `AUDIT` on it, rebuilt from both streams at start and followed while the service runs
//! (so several consoles, or a restarted one, agree).
//!
//! A decision is on a *message*: it decides every item of that message (its flag and each
//! member's report of it) queued before the decision, and the item it was made on. A report
//! queued after a decision is open again: somebody objects anew.
//!
//! **Reports aggregate** (issue 26: every report was its own open item, listed before the
//! flags, and 334 items in 15 s from two connection pairs buried the queue): a message has
//! at most one open report entry, which counts its reports and lists its distinct reporters.
//! Reports rank below the model's flags unless [`AGREE`] distinct members reported the
//! message. A new open report entry is refused past [`MAX_OPEN_PER_REPORTER`] open ones of
//! its first reporter, [`MAX_OPEN_REPORTS_PER_TENANT`] of its tenant, or
//! [`MAX_OPEN_REPORTS`] in all; each refusal is counted ([`Queue::dropped`]).

use std::collections::{BTreeMap, HashMap};

use offpath_protocol::{HumanReview, ReviewDecision, ReviewItem, ReviewKind};
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

/// One queued item and what reviewers decided on its message, oldest first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    /// The item's key (its `Nats-Msg-Id`): what a decision names.
    pub(crate) key: String,
    pub(crate) item: ReviewItem,
    pub(crate) decisions: Vec<HumanReview>,
    pub(crate) status: Status,
    /// A report entry: every report of the message it holds (the first included).
    pub(crate) reports: u64,
    /// A report entry: its distinct reporters, first [`MAX_REPORTERS_LISTED`] of them.
    pub(crate) reporters: Vec<String>,
    /// The keys of the reports that joined it (a copy of one, read again, counts once).
    #[serde(skip)]
    joined: Vec<String>,
}

/// Distinct reporters that make a report rank above the model's flags.
/// (Reports join one entry when they report the same text from the same source.)
pub(crate) const AGREE: usize = 3;
/// Reporters listed on one entry at most (the count goes on).
pub(crate) const MAX_REPORTERS_LISTED: usize = 100;
/// Open report entries one member's reports may have started at once.
pub(crate) const MAX_OPEN_PER_REPORTER: usize = 50;
/// Open report entries of one tenant at once.
pub(crate) const MAX_OPEN_REPORTS_PER_TENANT: usize = 10_000;
/// Open report entries at once, all tenants together (flags are never refused).
pub(crate) const MAX_OPEN_REPORTS: usize = 50_000;

/// Why a report did not become an entry of its own (the `reason` label).
pub(crate) const DROP_REASONS: [&str; 3] = ["reporter_quota", "tenant_quota", "open_bound"];

/// A message: its tenant and id.
type MessageKey = (String, String);

fn message_of(item: &ReviewItem) -> MessageKey {
    (item.verdict.tenant.clone(), item.verdict.id.clone())
}

/// Items kept in memory at most before the oldest decided ones are forgotten (they stay in
/// `AUDIT`; open items are never forgotten).
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// Every item, by key, and the decisions on each message.
#[derive(Debug)]
pub(crate) struct Queue {
    entries: BTreeMap<String, Entry>,
    /// Per message: each decision with the key of the item it was made on, in time order.
    decisions: HashMap<MessageKey, Vec<(String, HumanReview)>>,
    /// Per message: the keys of its items.
    items: HashMap<MessageKey, Vec<String>>,
    max_entries: usize,
    /// Decided items forgotten to stay within `max_entries`.
    forgotten: u64,
    /// Open report entries, by tenant and by first reporter (keys).
    open_reports: OpenReports,
    /// Keys of reports that joined another entry (so a copy of one is not counted again).
    joined: std::collections::HashSet<String>,
    /// Reports refused an entry of their own, by [`DROP_REASONS`] index.
    dropped: [u64; 3],
}

/// The open report entries, counted the ways the bounds need.
#[derive(Debug, Default)]
struct OpenReports {
    all: std::collections::HashSet<String>,
    by_tenant: HashMap<String, std::collections::HashSet<String>>,
    by_reporter: HashMap<String, std::collections::HashSet<String>>,
}

impl OpenReports {
    /// Files `entry` as open or not.
    fn track(&mut self, entry: &Entry) {
        let Some(report) = entry.item.report.as_ref() else {
            return;
        };
        let tenant = &entry.item.verdict.tenant;
        if entry.status == Status::Decided {
            self.all.remove(&entry.key);
            for (map, name) in [
                (&mut self.by_tenant, tenant),
                (&mut self.by_reporter, &report.reporter),
            ] {
                if let Some(keys) = map.get_mut(name) {
                    keys.remove(&entry.key);
                    if keys.is_empty() {
                        map.remove(name);
                    }
                }
            }
        } else {
            self.all.insert(entry.key.clone());
            self.by_tenant
                .entry(tenant.clone())
                .or_default()
                .insert(entry.key.clone());
            self.by_reporter
                .entry(report.reporter.clone())
                .or_default()
                .insert(entry.key.clone());
        }
    }

    /// Why a new open report entry of `tenant` started by `reporter` is refused, if it is.
    fn refuses(&self, tenant: &str, reporter: &str) -> Option<usize> {
        let count = |map: &HashMap<String, std::collections::HashSet<String>>, k: &str| {
            map.get(k).map_or(0, std::collections::HashSet::len)
        };
        if count(&self.by_reporter, reporter) >= MAX_OPEN_PER_REPORTER {
            Some(0)
        } else if count(&self.by_tenant, tenant) >= MAX_OPEN_REPORTS_PER_TENANT {
            Some(1)
        } else if self.all.len() >= MAX_OPEN_REPORTS {
            Some(2)
        } else {
            None
        }
    }
}

impl Default for Queue {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl Queue {
    /// A queue keeping `max_entries` items in memory at most (open ones always).
    pub(crate) fn with_capacity(max_entries: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            decisions: HashMap::new(),
            items: HashMap::new(),
            max_entries: max_entries.max(1),
            forgotten: 0,
            open_reports: OpenReports::default(),
            joined: std::collections::HashSet::new(),
            dropped: [0; 3],
        }
    }

    /// Reports refused an entry of their own so far, by reason ([`DROP_REASONS`]).
    pub(crate) fn dropped(&self) -> [(&'static str, u64); 3] {
        [0, 1, 2].map(|i| (DROP_REASONS[i], self.dropped[i]))
    }

    /// Decided items forgotten so far.
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Past `max_entries`, forgets the oldest decided items: a tenth of the capacity at a
    /// time, so the sort is paid once per many additions. A message with no item left
    /// takes its decisions along (a later report of it is open, as it should be).
    fn trim(&mut self) {
        if self.entries.len() <= self.max_entries {
            return;
        }
        let mut decided: Vec<(u64, String)> = self
            .entries
            .values()
            .filter(|e| e.status == Status::Decided)
            .map(|e| (e.item.queued_at_ms, e.key.clone()))
            .collect();
        decided.sort_unstable();
        let excess = self.entries.len() - self.max_entries;
        let batch = excess.max(self.max_entries / 10).min(decided.len());
        for (_, key) in decided.into_iter().take(batch) {
            let Some(entry) = self.entries.remove(&key) else {
                continue;
            };
            for joined in &entry.joined {
                self.joined.remove(joined);
            }
            self.forgotten += 1;
            let message = message_of(&entry.item);
            if let Some(keys) = self.items.get_mut(&message) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    self.items.remove(&message);
                    self.decisions.remove(&message);
                }
            }
        }
    }

    /// Adds an item from `REVIEW` (a copy of one already known changes nothing). A report
    /// of a message with an open report entry joins that entry.
    pub(crate) fn add(&mut self, item: ReviewItem) {
        let key = item.dedup_key();
        if self.entries.contains_key(&key) || self.joined.contains(&key) {
            return;
        }
        let message = message_of(&item);
        if let Some(report) = &item.report {
            if self.join_open_report(&message, &item) {
                return;
            }
            if let Some(reason) = self.open_reports.refuses(&message.0, &report.reporter) {
                self.dropped[reason] += 1;
                return;
            }
        }
        let reporters: Vec<String> = item.report.iter().map(|r| r.reporter.clone()).collect();
        let mut entry = Entry {
            key: key.clone(),
            reports: reporters.len() as u64,
            reporters,
            joined: Vec::new(),
            item,
            decisions: Vec::new(),
            status: Status::Open,
        };
        refresh(&mut entry, self.decisions.get(&message));
        self.open_reports.track(&entry);
        self.entries.insert(key.clone(), entry);
        self.items.entry(message).or_default().push(key);
        self.trim();
    }

    /// Counts `report` on the open report entry of `message` with the same text and text
    /// source; false when there is none. (In an end-to-end-encrypted room each reporter
    /// submits the plaintext: a different text, or a franked one beside an unproven one, is
    /// other evidence and stays an entry of its own.)
    fn join_open_report(&mut self, message: &MessageKey, report: &ReviewItem) -> bool {
        let Some(reporter) = report.report.as_ref().map(|r| r.reporter.as_str()) else {
            return false;
        };
        let same = |e: &Entry| {
            e.item.kind == ReviewKind::Report
                && e.status != Status::Decided
                && e.item.verdict.text_sha256 == report.verdict.text_sha256
                && e.item.report.as_ref().map(|r| r.text_source)
                    == report.report.as_ref().map(|r| r.text_source)
        };
        let open = self
            .items
            .get(message)
            .into_iter()
            .flatten()
            .find(|key| self.entries.get(*key).is_some_and(same));
        let Some(entry) = open.cloned().and_then(|key| self.entries.get_mut(&key)) else {
            return false;
        };
        let key = report.dedup_key();
        entry.joined.push(key.clone());
        self.joined.insert(key);
        entry.reports += 1;
        if entry.reporters.len() < MAX_REPORTERS_LISTED
            && !entry.reporters.iter().any(|r| r == reporter)
        {
            entry.reporters.push(reporter.to_string());
        }
        true
    }

    /// Records a decision on item `item` (from `AUDIT`, or just made here: the same decision
    /// seen twice is recorded once). An item not seen yet is added from the audit entry.
    pub(crate) fn record(&mut self, item: &ReviewItem, review: &HumanReview) {
        self.add(item.clone());
        let message = message_of(item);
        let decisions = self.decisions.entry(message.clone()).or_default();
        let decided = (item.dedup_key(), review.clone());
        if decisions.contains(&decided) {
            return;
        }
        decisions.push(decided);
        // A total order: two decisions in one millisecond end the same way on every console,
        // whichever stream delivered them first.
        decisions.sort_by(|(a_key, a), (b_key, b)| {
            (a.decided_at_ms, &a.reviewer, a.decision.as_str(), a_key).cmp(&(
                b.decided_at_ms,
                &b.reviewer,
                b.decision.as_str(),
                b_key,
            ))
        });
        let decisions = self.decisions.get(&message);
        for key in self.items.get(&message).into_iter().flatten() {
            if let Some(entry) = self.entries.get_mut(key) {
                refresh(entry, decisions);
                self.open_reports.track(entry);
            }
        }
        self.trim();
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The entries `filter` keeps: reports that [`AGREE`] members made first, then the
    /// model's flags and blocks, then the other reports; oldest first within each.
    /// With `order=newest`: the most recently sent first.
    pub(crate) fn list(&self, filter: &Filter) -> Vec<&Entry> {
        let mut list: Vec<&Entry> = self.entries.values().filter(|e| filter.keeps(e)).collect();
        if filter.order == Some(Order::Newest) {
            list.sort_by_key(|e| (std::cmp::Reverse(e.item.sent_at_ms), e.key.clone()));
            return list;
        }
        list.sort_by_key(|e| {
            let rank = match e.item.kind {
                ReviewKind::Report if e.reporters.len() >= AGREE => 0,
                ReviewKind::Report => 2,
                _ => 1,
            };
            (rank, e.item.queued_at_ms, e.key.clone())
        });
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

/// Sets `entry`'s decisions to those of its message that decide it (made on it, or after it
/// was queued) and its status to what the last of them says.
fn refresh(entry: &mut Entry, decisions: Option<&Vec<(String, HumanReview)>>) {
    let queued_at_ms = entry.item.queued_at_ms;
    entry.decisions = decisions
        .into_iter()
        .flatten()
        .filter(|(key, d)| *key == entry.key || d.decided_at_ms >= queued_at_ms)
        .map(|(_, d)| d.clone())
        .collect();
    entry.status = entry
        .decisions
        .last()
        .map_or(Status::Open, |d| match d.decision {
            ReviewDecision::Escalate => Status::Escalated,
            _ => Status::Decided,
        });
}

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Order {
    /// Agreed reports, then the model's flags and blocks, then other reports; oldest first
    /// within each.
    Queue,
    /// The most recently sent first.
    Newest,
}

/// What the console asks for.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// `open` (the default: open and escalated), `decided` or `all`.
    pub(crate) status: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) room: Option<String>,
    /// `flag`, `block` or `report`.
    pub(crate) kind: Option<String>,
    /// The sender of the judged message (a report entry's: the reported message's sender):
    /// the console shows a sender's record beside an item.
    pub(crate) sender: Option<String>,
    /// The order of the list (the queue's when absent).
    pub(crate) order: Option<Order>,
    /// How many to return at most (the route's default when absent).
    pub(crate) limit: Option<usize>,
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
            && self.sender.as_ref().is_none_or(|s| *s == verdict.sender)
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

    /// A sender's record: every status, that sender's items only, the newest sent first.
    #[test]
    fn a_senders_record_lists_its_items_newest_first() {
        let mut queue = Queue::default();
        let mut bob = item("b", 30);
        bob.verdict.sender = "bob".into();
        let (old, new) = (item("old", 10), item("new", 20));
        for item in [&old, &bob, &new] {
            queue.add(item.clone());
        }
        queue.record(&old, &review(ReviewDecision::Remove, 40));
        let record = Filter {
            status: Some("all".into()),
            sender: Some("alice".into()),
            order: Some(Order::Newest),
            ..Filter::default()
        };
        let ids: Vec<String> = queue
            .list(&record)
            .iter()
            .map(|e| e.item.verdict.id.clone())
            .collect();
        assert_eq!(ids, ["new", "old"]);
        let order: Result<Filter, _> = serde_json::from_str(r#"{"order":"oldest"}"#);
        assert!(order.is_err(), "an unknown order is refused");
    }

    fn report(id: &str, reporter: &str, at: u64) -> ReviewItem {
        let mut item = item(id, at);
        item.kind = ReviewKind::Report;
        item.report = Some(offpath_protocol::Report {
            message_id: id.into(),
            reporter: reporter.into(),
            reason: "rude".into(),
            message_sent_at_ms: at,
            text_source: offpath_protocol::TextSource::Gateway,
        });
        item
    }

    /// Two members' reports of a message are one entry, listed after the model's flag
    /// (fewer than `AGREE` reporters); a decision on one item of a message decides every
    /// item of it queued before, while a report queued after it is open.
    #[test]
    fn a_decision_decides_the_message_and_reports_join_one_entry() {
        let mut queue = Queue::default();
        let flag = item("m", 10);
        let (by_bob, by_carol) = (report("m", "bob", 20), report("m", "carol", 30));
        let other = report("n", "bob", 40);
        for item in [&flag, &by_bob, &by_carol, &other] {
            queue.add(item.clone());
        }
        let open: Vec<String> = queue
            .list(&Filter::default())
            .iter()
            .map(|e| e.key.clone())
            .collect();
        assert_eq!(
            open,
            [&flag, &by_bob, &other].map(ReviewItem::dedup_key),
            "the flag first, then one entry per reported message, oldest first"
        );
        let joined = queue.get(&by_bob.dedup_key()).expect("bob's entry");
        assert_eq!(
            (joined.reports, joined.reporters.clone()),
            (2, vec!["bob".into(), "carol".into()])
        );
        queue.record(&by_carol, &review(ReviewDecision::Remove, 35));
        assert_eq!(
            queue.open(),
            (1, Some(40)),
            "m's items are decided, n is not"
        );
        let later = report("m", "dave", 50);
        queue.add(later.clone());
        assert_eq!(
            queue.open(),
            (2, Some(40)),
            "a report after the decision is open"
        );
        assert_eq!(
            queue.get(&flag.dedup_key()).map(|e| e.decisions.len()),
            Some(1)
        );
    }

    /// Issue 26: 1,000 reports of one message make one entry (counted, 100 reporters
    /// listed), which ranks above the model's flags once `AGREE` members agree.
    #[test]
    fn a_thousand_reports_of_one_message_are_one_entry_ranked_first() {
        let mut queue = Queue::default();
        queue.add(item("flagged", 5));
        for n in 0..1000 {
            queue.add(report("m", &format!("member{n}"), 10 + n));
        }
        let list = queue.list(&Filter::default());
        assert_eq!(list.len(), 2, "the flag and one report entry");
        assert_eq!(list[0].item.verdict.id, "m", "agreed on by many: first");
        assert_eq!(list[0].reports, 1000);
        assert_eq!(list[0].reporters.len(), MAX_REPORTERS_LISTED);
        assert_eq!(queue.dropped().map(|(_, n)| n), [0, 0, 0]);
        // A copy of a joined report (read again from REVIEW, or recorded from AUDIT)
        // counts once.
        queue.add(report("m", "member7", 17));
        queue.record(
            &report("m", "member8", 18),
            &review(ReviewDecision::Escalate, 2_000),
        );
        let entry = queue
            .get(&report("m", "member0", 10).dedup_key())
            .expect("entry");
        assert_eq!(entry.reports, 1000);
    }

    /// One member's reports start at most `MAX_OPEN_PER_REPORTER` open entries; the rest
    /// are counted, and the member may start new ones as reviewers decide.
    #[test]
    fn one_reporter_cannot_bury_the_queue() {
        let mut queue = Queue::default();
        for n in 0..(MAX_OPEN_PER_REPORTER as u64 + 10) {
            queue.add(report(&format!("m{n}"), "mallory", n));
        }
        assert_eq!(queue.open().0, MAX_OPEN_PER_REPORTER);
        assert_eq!(queue.dropped()[0], ("reporter_quota", 10));
        queue.add(item("flag", 1_000));
        assert_eq!(
            queue.open().0,
            MAX_OPEN_PER_REPORTER + 1,
            "a flag is never refused"
        );
        queue.record(
            &report("m0", "mallory", 0),
            &review(ReviewDecision::Dismiss, 2_000),
        );
        queue.add(report("new", "mallory", 3_000));
        assert!(
            queue
                .get(&report("new", "mallory", 3_000).dedup_key())
                .is_some()
        );
        queue.add(report("m1", "trudy", 4_000));
        assert_eq!(
            queue
                .get(&report("m1", "mallory", 1).dedup_key())
                .map(|e| e.reports),
            Some(2),
            "another member's report of an open message joins it"
        );
    }

    /// Past its capacity the queue forgets the oldest decided items, never an open one.
    #[test]
    fn memory_is_bounded_by_forgetting_decided_items() {
        let mut queue = Queue::with_capacity(10);
        for n in 0..10u64 {
            queue.add(item(&format!("m{n}"), n));
        }
        for n in 0..5u64 {
            let item = item(&format!("m{n}"), n);
            queue.record(&item, &review(ReviewDecision::Remove, 100 + n));
        }
        queue.add(item("m10", 10));
        assert_eq!(queue.forgotten(), 1, "the oldest decided item");
        assert!(queue.get(&item("m0", 0).dedup_key()).is_none());
        assert!(queue.get(&item("m1", 1).dedup_key()).is_some());
        for n in 11..30u64 {
            queue.add(item(&format!("m{n}"), n));
        }
        assert_eq!(queue.forgotten(), 5, "every decided item, and no open one");
        assert_eq!(queue.open().0, 25, "all open items kept, past the capacity");
    }
}
