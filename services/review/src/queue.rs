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

mod filter;
mod open_reports;

pub(crate) use filter::{Filter, Order};
use open_reports::OpenReports;

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
#[cfg(test)]
mod tests;
