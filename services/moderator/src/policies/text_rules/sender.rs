//! A rule's sender condition (issue 30, item 2): what the sender did lately, as every
//! moderator counts it from the shared sender state (`SENDERS`).
//!
//! ```toml
//! [policies.chat.rules.flood]
//! sender = { messages = 10, per_s = 30 }             # an 11th message within 30 s, any room
//! action = "block"
//!
//! [policies.chat.rules.copy_paste]
//! sender = { repeats = 3, per_s = 600, room = true } # the same text a 4th time in 10 min here
//! action = "flag"
//!
//! [policies.chat.rules.link_drop]
//! sender = { first_link = true, per_s = 3600 }     # a link in the first message of the hour
//! action = "flag"
//!
//! [policies.chat.rules.mention_flood]
//! sender = { mentions = 20, per_s = 60 }            # more than 20 users mentioned in a minute
//! action = "block"
//!
//! [policies.chat.rules.three_strikes]
//! sender = { strikes = 2, per_s = 600 }              # blocked 3 times in 10 min: blocked
//! action = "block"
//! ```

use std::collections::VecDeque;

use serde::Deserialize;

/// Longest window a sender rule counts over, in seconds: an hour.
pub const WINDOW_S: u64 = 3600;
/// Messages remembered per sender: a rule's `messages` and `repeats` stay below it.
pub const MAX_MESSAGES: usize = 64;
/// Strikes (blocks) remembered per sender: a rule's `strikes` stays below it.
pub const MAX_STRIKES: usize = 16;

/// One thing a sender did: a message taken in, or a block (a strike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When the transport accepted the message, ms since the epoch.
    pub at_ms: u64,
    /// The room, hashed in this process.
    pub room: u64,
    /// The text's digest, the same in every process.
    pub text: u64,
    /// The request id, hashed in this process: the same event seen twice counts once.
    pub id: u64,
    /// Links in the message (as link rules find them).
    pub links: u16,
    /// Users it mentions (contract v1.4).
    pub mentions: u16,
}

/// A sender's recent messages and strikes, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Recent {
    /// Messages, this one included once recorded.
    pub messages: VecDeque<Entry>,
    /// Blocks.
    pub strikes: VecDeque<Entry>,
}

/// Where the message judged stands: the end of every window, its room and its text.
#[derive(Debug, Clone, Copy)]
pub struct Here {
    /// The message's `sent_at_ms`.
    pub at_ms: u64,
    /// Its room, hashed as [`Entry::room`].
    pub room: u64,
    /// Its text's digest.
    pub text: u64,
    /// Its links.
    pub links: u16,
}

/// A sender's history and where the message judged stands in it.
#[derive(Debug, Clone)]
pub struct SenderView {
    /// The history.
    pub recent: Recent,
    /// The message.
    pub here: Here,
    /// Its near-duplicates from every sender of the tenant (campaign rules).
    pub near: super::campaign::Near,
}

impl Recent {
    /// The newest event's time (0 when none).
    pub(crate) fn newest_ms(&self) -> u64 {
        let last = |q: &VecDeque<Entry>| q.back().map_or(0, |e| e.at_ms);
        last(&self.messages).max(last(&self.strikes))
    }

    /// Entries of `list` in `(here.at_ms - window_s, here.at_ms]`, in `here`'s room when
    /// `room`, whose text is `here`'s when `same_text`.
    pub fn count(
        list: &VecDeque<Entry>,
        here: Here,
        window_s: u64,
        room: bool,
        same_text: bool,
    ) -> usize {
        Self::within(list, here, window_s, room)
            .filter(|e| !same_text || e.text == here.text)
            .count()
    }

    /// Entries of `list` in the window ending at `here`, in its room when `room`.
    pub fn within(
        list: &VecDeque<Entry>,
        here: Here,
        window_s: u64,
        room: bool,
    ) -> impl Iterator<Item = &Entry> {
        let from = here.at_ms.saturating_sub(window_s * 1000);
        list.iter()
            .filter(move |e| e.at_ms > from && e.at_ms <= here.at_ms)
            .filter(move |e| !room || e.room == here.room)
    }
}

/// The bounds a sender rule may set, by the names a verdict's `counts` gives them.
const BOUNDS: [&str; 5] = ["messages", "repeats", "strikes", "links", "mentions"];

/// `[…rules.<id>] sender = {…}` as written: each set bound is a condition, and any one
/// passed matches.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct SenderLimits {
    /// More messages than this in the window, this one included.
    messages: Option<usize>,
    /// The same text (case and spacing aside) more times than this in the window.
    repeats: Option<usize>,
    /// More blocks than this in the window, before this message.
    strikes: Option<usize>,
    /// More links than this in the sender's messages in the window, this one's included.
    links: Option<usize>,
    /// More users mentioned than this in the window, this message's included (v1.4).
    mentions: Option<usize>,
    /// This message has a link and is the sender's first in the window.
    #[serde(default)]
    first_link: bool,
    /// The window, in seconds (1 to [`WINDOW_S`]).
    per_s: u64,
    /// Count in the message's room only (else across the tenant's rooms).
    #[serde(default)]
    room: bool,
}

impl SenderLimits {
    /// Records what is wrong with it (`key` says where in the file).
    pub(crate) fn check(&self, key: &str, problems: &mut Vec<String>) {
        let bounds = [
            self.messages,
            self.repeats,
            self.strikes,
            self.links,
            self.mentions,
        ];
        if bounds.iter().all(Option::is_none) && !self.first_link {
            problems.push(format!(
                "{key}: none of messages, repeats, strikes, links, mentions, first_link"
            ));
        }
        if !(1..=WINDOW_S).contains(&self.per_s) {
            problems.push(format!(
                "{key}.per_s: {} is not within 1..={WINDOW_S}",
                self.per_s
            ));
        }
        for (name, value, below) in [
            ("messages", self.messages, MAX_MESSAGES),
            ("repeats", self.repeats, MAX_MESSAGES),
            ("strikes", self.strikes, MAX_STRIKES),
        ] {
            if value.is_some_and(|v| v >= below) {
                problems.push(format!(
                    "{key}.{name}: must be below {below} (what a moderator remembers per sender)"
                ));
            }
        }
    }

    /// Whether the sender's history passes a bound.
    pub(crate) fn matches(&self, view: &SenderView) -> bool {
        self.counts(view).any(|(_, n, bound)| n > bound)
            || (self.first_link && view.here.links > 0 && self.count_of("messages", view) <= 1)
    }

    /// What it counts of the sender's window, for each bound it sets, as asked: (name,
    /// count, bound). A verdict's `counts` (v1.5) says them.
    pub(crate) fn counts<'a>(
        &'a self,
        view: &'a SenderView,
    ) -> impl Iterator<Item = (&'static str, usize, usize)> + 'a {
        BOUNDS.into_iter().filter_map(move |name| {
            let bound = match name {
                "messages" => self.messages,
                "repeats" => self.repeats,
                "strikes" => self.strikes,
                "links" => self.links,
                _ => self.mentions,
            }?;
            Some((name, self.count_of(name, view), bound))
        })
    }

    /// The count of the bound `name` (one of [`BOUNDS`]) in the sender's window.
    fn count_of(&self, name: &str, view: &SenderView) -> usize {
        let (here, messages) = (view.here, &view.recent.messages);
        let count = |list, same_text| Recent::count(list, here, self.per_s, self.room, same_text);
        let sum = |of: fn(&Entry) -> u16| -> usize {
            Recent::within(messages, here, self.per_s, self.room)
                .map(|e| usize::from(of(e)))
                .sum()
        };
        match name {
            "messages" => count(messages, false),
            "repeats" => count(messages, true),
            "strikes" => count(&view.recent.strikes, false),
            "links" => sum(|e| e.links),
            _ => sum(|e| e.mentions),
        }
    }
}

impl super::TextRule {
    /// What its sender and campaign conditions counted of `view` (the message's sender and
    /// near-duplicates), by name: a verdict's `counts` (v1.5); empty for a rule without.
    pub fn counts(&self, view: &SenderView) -> std::collections::BTreeMap<String, u64> {
        let sender = self.sender.iter().flat_map(|s| s.counts(view));
        let campaign = self
            .campaign
            .iter()
            .flat_map(|c| c.counts(&view.near, view.here.at_ms));
        sender
            .chain(campaign)
            .map(|(name, n, _)| (name.to_string(), n as u64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(toml_text: &str) -> SenderLimits {
        toml::from_str(toml_text).expect("limits")
    }

    fn entry(at_ms: u64, id: u64, links: u16, mentions: u16) -> Entry {
        Entry {
            at_ms,
            room: 1,
            text: id,
            id,
            links,
            mentions,
        }
    }

    #[test]
    fn links_mentions_and_a_first_link_count_in_the_window() {
        let here = |links| Here {
            at_ms: 100_000,
            room: 1,
            text: 9,
            links,
        };
        let view = |entries: Vec<Entry>, links| SenderView {
            recent: Recent {
                messages: entries.into(),
                strikes: VecDeque::new(),
            },
            here: here(links),
            near: super::super::campaign::Near::default(),
        };
        let first = limits("first_link = true\nper_s = 3600");
        assert!(first.matches(&view(vec![entry(100_000, 9, 1, 0)], 1)));
        assert!(!first.matches(&view(
            vec![entry(90_000, 1, 0, 0), entry(100_000, 9, 1, 0)],
            1
        )));
        assert!(!first.matches(&view(vec![entry(100_000, 9, 0, 0)], 0)));
        let links = limits("links = 2\nper_s = 60");
        let two = vec![entry(50_000, 1, 2, 0), entry(100_000, 9, 1, 0)];
        assert!(links.matches(&view(two, 1)), "3 links within the minute");
        let old = vec![entry(30_000, 1, 2, 0), entry(100_000, 9, 1, 0)];
        assert!(
            !links.matches(&view(old, 1)),
            "the older 2 are out of the window"
        );
        let mentions = limits("mentions = 5\nper_s = 60");
        assert!(mentions.matches(&view(
            vec![entry(90_000, 1, 0, 3), entry(100_000, 9, 0, 3)],
            0
        )));
        assert!(!mentions.matches(&view(vec![entry(100_000, 9, 0, 5)], 0)));
    }
}
