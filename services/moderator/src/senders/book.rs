//! The bounded in-memory book of what each sender did lately: a few dozen events per
//! sender, senders up to a capacity, each event once (by request id and kind).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

pub(crate) use crate::policies::text_rules::sender::{
    Entry, MAX_MESSAGES, MAX_STRIKES, Recent, WINDOW_S,
};

/// Whether an event is a message or a strike (`message`, `strike` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Message,
    Strike,
}

impl Kind {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Strike => "strike",
        }
    }
}

/// What adding an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// Counted.
    New,
    /// Already counted (its echo, or a redelivered request's).
    Seen,
    /// Older than the window: not counted.
    Stale,
}

/// Every sender's [`Recent`], bounded: at most `capacity` senders (the least recently
/// active go first, counted), [`MAX_MESSAGES`] and [`MAX_STRIKES`] each.
pub(crate) struct Book {
    senders: Mutex<HashMap<u64, Recent>>,
    capacity: usize,
}

impl Book {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            senders: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Adds one event of `sender` (a [`sender_key`]); returns what it did, how many
    /// senders were evicted to make room, and how many the book holds now (read under the
    /// same lock). `now_ms` bounds the window.
    pub(crate) fn add(
        &self,
        sender: u64,
        kind: Kind,
        entry: Entry,
        now_ms: u64,
    ) -> (Added, usize, usize) {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let added = Self::add_to(&mut senders, self.capacity, sender, kind, entry, now_ms);
        (added.0, added.1, senders.len())
    }

    fn add_to(
        senders: &mut HashMap<u64, Recent>,
        capacity: usize,
        sender: u64,
        kind: Kind,
        entry: Entry,
        now_ms: u64,
    ) -> (Added, usize) {
        let oldest = now_ms.saturating_sub(WINDOW_S * 1000);
        if entry.at_ms <= oldest {
            return (Added::Stale, 0);
        }
        let mut evicted = 0;
        if !senders.contains_key(&sender) && senders.len() >= capacity {
            evicted = evict(senders, oldest);
        }
        let recent = senders.entry(sender).or_default();
        let (list, max) = match kind {
            Kind::Message => (&mut recent.messages, MAX_MESSAGES),
            Kind::Strike => (&mut recent.strikes, MAX_STRIKES),
        };
        if list.iter().any(|e| e.id == entry.id) {
            return (Added::Seen, evicted);
        }
        while list.front().is_some_and(|e| e.at_ms <= oldest) {
            list.pop_front();
        }
        // Full: the oldest goes first (or the newcomer, when it is the oldest), so the list
        // never grows past `max` (a VecDeque past its capacity doubles it).
        if list.len() >= max {
            if list.front().is_some_and(|e| e.at_ms > entry.at_ms) {
                return (Added::New, evicted);
            }
            list.pop_front();
        }
        if list.capacity() == 0 {
            list.reserve_exact(max);
        }
        // Kept in time order: events of several moderators arrive a little out of order.
        let at = list.partition_point(|e| e.at_ms <= entry.at_ms);
        list.insert(at, entry);
        (Added::New, evicted)
    }

    /// `sender`'s history (a copy: at most [`MAX_MESSAGES`] + [`MAX_STRIKES`] entries).
    pub(crate) fn recent(&self, sender: u64) -> Recent {
        let senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders.get(&sender).cloned().unwrap_or_default()
    }

    /// Senders in the book.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.senders.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Makes room in a full book, down to seven eighths of it so the next eighth of new senders
/// costs nothing: every sender idle for the whole window, then the least recently active
/// (found in linear time). Returns how many went.
fn evict(senders: &mut HashMap<u64, Recent>, oldest: u64) -> usize {
    let before = senders.len();
    let keep = before - before / 8 - 1;
    senders.retain(|_, r| r.newest_ms() > oldest);
    if senders.len() > keep {
        let mut by_age: Vec<(u64, u64)> =
            senders.iter().map(|(k, r)| (r.newest_ms(), *k)).collect();
        let excess = senders.len() - keep;
        by_age.select_nth_unstable(excess - 1);
        for (_, key) in &by_age[..excess] {
            senders.remove(key);
        }
    }
    before - senders.len()
}

/// A sender's key: tenant and sender id, hashed (the same in every process).
pub(crate) fn sender_key(tenant: &str, sender: &str) -> u64 {
    digest([tenant.as_bytes(), b"\0", sender.as_bytes()])
}

/// The digest by which repeats are recognised: the text lower-cased, white space collapsed;
/// the same in every process and version (SHA-256, its first 8 bytes).
pub(crate) fn text_digest(text: &str) -> u64 {
    let folded: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    digest([folded.join(" ").as_bytes()])
}

fn digest<const N: usize>(parts: [&[u8]; N]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let bytes: [u8; 32] = hasher.finalize().into();
    u64::from_be_bytes(bytes[..8].try_into().unwrap_or([0; 8]))
}

/// A value hashed in this process only (rooms and ids are compared, never sent).
pub(crate) fn local_hash(value: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::text_rules::sender::Here;

    const NOW: u64 = 10_000_000;

    fn entry(at_ms: u64, id: u64) -> Entry {
        Entry {
            at_ms,
            room: 1,
            text: 7,
            id,
            links: 0,
            mentions: 0,
        }
    }

    #[test]
    fn an_event_counts_once_and_the_window_slides() {
        let book = Book::new(10);
        assert_eq!(
            book.add(1, Kind::Message, entry(NOW - 5, 1), NOW).0,
            Added::New
        );
        assert_eq!(
            book.add(1, Kind::Message, entry(NOW - 5, 1), NOW).0,
            Added::Seen
        );
        assert_eq!(
            book.add(1, Kind::Message, entry(NOW - 9, 2), NOW).0,
            Added::New
        );
        let stale = NOW - WINDOW_S * 1000;
        assert_eq!(
            book.add(1, Kind::Message, entry(stale, 3), NOW).0,
            Added::Stale
        );
        let recent = book.recent(1);
        let order: Vec<u64> = recent.messages.iter().map(|e| e.id).collect();
        assert_eq!(order, [2, 1], "kept in time order");
        let here = Here {
            at_ms: NOW,
            room: 1,
            text: 7,
            links: 0,
        };
        assert_eq!(Recent::count(&recent.messages, here, 1, true, true), 2);
        let later = Here {
            at_ms: NOW + 994,
            ..here
        };
        assert_eq!(Recent::count(&recent.messages, later, 1, false, false), 1);
    }

    #[test]
    fn a_full_book_and_a_long_history_stay_bounded() {
        let book = Book::new(4);
        for id in 0..200 {
            book.add(1, Kind::Message, entry(NOW - 200 + id, id), NOW);
        }
        assert_eq!(book.recent(1).messages.len(), MAX_MESSAGES);
        let mut evicted = 0;
        for sender in 2..20 {
            evicted += book
                .add(sender, Kind::Strike, entry(NOW - 100 + sender, sender), NOW)
                .1;
        }
        assert!(book.len() <= 4, "{} senders", book.len());
        assert_eq!(
            evicted, 15,
            "each new sender past a capacity of 4 evicts one"
        );
        let big = Book::new(80);
        let evicted: usize = (0..200)
            .map(|s| big.add(s, Kind::Message, entry(NOW - 1000 + s, s), NOW).1)
            .sum();
        assert!(
            big.len() <= 80 && evicted == 200 - big.len(),
            "{evicted} {}",
            big.len()
        );
        assert!(big.recent(199).messages.len() == 1, "the newest stay");
        assert!(big.recent(0).messages.is_empty(), "the oldest went");
        assert!(book.recent(19).strikes.len() == 1, "the newest stays");
    }

    #[test]
    fn digests_fold_case_and_spacing() {
        assert_eq!(text_digest("Buy  NOW\n"), text_digest("buy now"));
        assert_ne!(text_digest("buy now"), text_digest("buy later"));
        assert_ne!(sender_key("a", "bc"), sender_key("ab", "c"));
    }
}
