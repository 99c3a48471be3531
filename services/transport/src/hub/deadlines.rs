//! Hold deadlines: a single task serves all held messages, instead of a timer task each.
//! The hub [`push`](Deadlines::push)es `(deadline, id)` when it holds a message; [`run`] sleeps
//! until the earliest deadline and hands each id that is due to [`Hub::hold_deadline`],
//! which does nothing for a message released meanwhile.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Hub, lock};

/// Held messages' ids by deadline. Not bounded by a count: an entry lives until its
/// deadline, so there are at most send rate × hold deadline of them, as many as messages
/// the tracker may hold (it never forgets a held one).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// Keyed by deadline, then by order of arrival (deadlines can be equal).
    due: Mutex<BTreeMap<(Instant, u64), String>>,
    next_seq: AtomicU64,
    /// Wakes [`run`] when a new deadline comes first.
    earlier: Notify,
}

impl Deadlines {
    /// Settles `id` at `at` (if it is still held then).
    pub(crate) fn push(&self, at: Instant, id: String) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut due = lock(&self.due);
        due.insert((at, seq), id);
        let first = due
            .first_key_value()
            .is_some_and(|(key, _)| *key == (at, seq));
        drop(due);
        if first {
            // Stores a permit when `run` is not waiting yet: the wake is never lost.
            self.earlier.notify_one();
        }
    }

    /// The earliest deadline.
    fn next(&self) -> Option<Instant> {
        lock(&self.due).first_key_value().map(|(&(at, _), _)| at)
    }

    /// Removes and returns the ids due at `now`.
    fn take_due(&self, now: Instant) -> Vec<String> {
        let mut due = lock(&self.due);
        let later = due.split_off(&(now, u64::MAX));
        std::mem::replace(&mut *due, later).into_values().collect()
    }
}

/// Settles held messages at their deadlines, for as long as the gateway runs (the task
/// is aborted when it stops).
pub(crate) async fn run(hub: Arc<Hub>) {
    let deadlines = Arc::clone(&hub.deadlines);
    loop {
        match deadlines.next() {
            None => deadlines.earlier.notified().await,
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => {
                    for id in deadlines.take_due(Instant::now()) {
                        hub.hold_deadline(&id);
                    }
                }
                () = deadlines.earlier.notified() => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Ids come out in deadline order, only once due, each once.
    #[test]
    fn due_in_deadline_order() {
        let deadlines = Deadlines::default();
        let start = Instant::now();
        let second = Duration::from_secs(1);
        deadlines.push(start + 2 * second, "b".into());
        deadlines.push(start + second, "a".into());
        deadlines.push(start + 2 * second, "c".into());
        assert_eq!(deadlines.next(), Some(start + second));
        assert!(deadlines.take_due(start).is_empty());
        assert_eq!(deadlines.take_due(start + second), ["a"]);
        assert_eq!(deadlines.take_due(start + 3 * second), ["b", "c"]);
        assert_eq!(deadlines.next(), None);
    }
}
