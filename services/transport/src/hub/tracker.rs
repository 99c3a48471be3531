//! What the gateway remembers about each accepted message until its verdict: where it went,
//! who sent it, whether it is held. Bounded by count and age; the oldest is forgotten
//! first (a verdict for a forgotten message is still applied from the verdict's own
//! fields, so forgetting loses nothing but the sender's original connection). A message
//! still *held* is never forgotten: only its entry knows its text, and its hold deadline
//! settles it soon anyway (held entries are bounded by the send rate × the hold deadline).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::lifecycle::{State, Tracked};

/// Accepted messages by id, bounded by `max` entries and `ttl` age.
#[derive(Debug)]
pub(crate) struct Tracker {
    map: HashMap<String, Tracked>,
    order: VecDeque<(Instant, String)>,
    max: usize,
    ttl: Duration,
}

impl Tracker {
    /// An empty tracker.
    pub(crate) fn new(max: usize, ttl: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
            ttl,
        }
    }

    /// Remembers `tracked` under `id`, forgetting the oldest entries past the bounds
    /// (never a held one).
    pub(crate) fn insert(&mut self, id: String, tracked: Tracked, now: Instant) {
        self.expire(now);
        // Each entry is looked at most once: a held one goes to the back of the line.
        let mut budget = self.order.len();
        while self.map.len() >= self.max && budget > 0 {
            budget -= 1;
            self.forget_front(now);
        }
        self.order.push_back((now, id.clone()));
        self.map.insert(id, tracked);
    }

    /// Forgets the oldest entry, unless it is still held: then it is queued again.
    fn forget_front(&mut self, now: Instant) {
        let Some((at, id)) = self.order.pop_front() else {
            return;
        };
        match self.map.get(&id) {
            Some(tracked) if matches!(tracked.state, State::Held { .. }) => {
                self.order.push_back((at.max(now), id));
            }
            _ => {
                self.map.remove(&id);
            }
        }
    }

    /// The entry for `id`.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Tracked> {
        self.map.get_mut(id)
    }

    /// Entries remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Messages currently held.
    pub(crate) fn held(&self) -> usize {
        self.map
            .values()
            .filter(|t| matches!(t.state, State::Held { .. }))
            .count()
    }

    fn expire(&mut self, now: Instant) {
        let mut budget = self.order.len();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.ttl || budget == 0 {
                break;
            }
            budget -= 1;
            self.forget_front(now);
        }
    }
}

/// The most recent ids of verdicts for unknown messages, bounded by count.
#[derive(Default)]
pub(crate) struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    /// Ids remembered at most (a few hundred KiB).
    const MAX: usize = 4096;

    /// Remembers `id`; false when it was already there.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= Self::MAX
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Weak;

    use super::*;
    use crate::config::{Failure, RoomPolicy};

    fn tracked() -> Tracked {
        Tracked {
            room: "r".into(),
            sender: "u".into(),
            sender_peer: Weak::new(),
            sent_at_ms: 0,
            accepted: Instant::now(),
            policy: RoomPolicy {
                hold: false,
                e2e: false,
                failure: Failure::Open,
            },
            state: State::Delivered,
            settled: false,
            reviewed_at_ms: 0,
            text_sha256: "".into(),
        }
    }

    /// The oldest entries go first, by count and by age.
    #[test]
    fn bounded_by_count_and_age() {
        let start = Instant::now();
        let mut tracker = Tracker::new(2, Duration::from_secs(10));
        for id in ["a", "b", "c"] {
            tracker.insert(id.into(), tracked(), start);
        }
        assert_eq!(tracker.len(), 2);
        assert!(tracker.get_mut("a").is_none() && tracker.get_mut("c").is_some());
        tracker.insert("d".into(), tracked(), start + Duration::from_secs(11));
        assert_eq!(tracker.len(), 1, "b and c expired");
    }

    /// A held message is never forgotten, by count or by age; the delivered ones around it
    /// are.
    #[test]
    fn held_messages_are_never_evicted() {
        let start = Instant::now();
        let mut tracker = Tracker::new(2, Duration::from_secs(10));
        let held = Tracked {
            state: State::Held { text: "t".into() },
            ..tracked()
        };
        tracker.insert("held".into(), held, start);
        for id in ["a", "b", "c", "d"] {
            tracker.insert(id.into(), tracked(), start);
        }
        assert!(
            tracker.get_mut("held").is_some(),
            "held survives the count bound"
        );
        assert!(tracker.get_mut("d").is_some());
        assert_eq!(tracker.held(), 1);
        tracker.insert("e".into(), tracked(), start + Duration::from_secs(11));
        assert!(
            tracker.get_mut("held").is_some(),
            "held survives the age bound"
        );
        assert!(tracker.get_mut("a").is_none() && tracker.get_mut("d").is_none());
    }
}
