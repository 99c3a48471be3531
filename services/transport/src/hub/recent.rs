//! The latest messages each room showed on this gateway: what a member can report
//! (`--report-window` per room) and the context a moderation request carries for reviewers
//! (`--review-context`). Bounded per room by count and by [`MAX_ROOM_BYTES`], the oldest
//! forgotten first, and in all by [`MAX_TOTAL_BYTES`] (past it nothing new is kept, and
//! counted); a room's messages are kept only while it has members here. One sender holds
//! at most [`MAX_SENDER_BYTES`] of it across rooms: an outside tester spent the whole
//! budget through end-to-end rooms (never moderated) from one address, 543 msg/s of 4 KiB,
//! so nobody else's messages could be reported (issue 26). Past its share a sender's own
//! oldest messages make room for its new one: refusing the new one instead would let a
//! sender fill its share in empty rooms and then send unreportable messages anywhere.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use offpath_protocol::{ContextMessage, MAX_CONTEXT_TEXT_BYTES};

use crate::frames::HistoryMessage;

/// Bytes kept per room at most (ids, senders, texts, commitments).
pub(crate) const MAX_ROOM_BYTES: usize = 64 * 1024;
/// Bytes kept for all rooms at most.
pub(crate) const MAX_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Bytes kept of one sender's messages, in all rooms, at most: 1/256 of the total (a
/// sender at the send rate fills it with 4 KiB texts in under a minute, and then only
/// replaces its own messages in rooms' windows with new ones that are not kept).
pub(crate) const MAX_SENDER_BYTES: usize = MAX_TOTAL_BYTES / 256;
/// The context of one request at most, counted as its JSON could be at worst (every byte of
/// id, sender and text escaped to two, plus the keys): with a 4 KiB text (8 KiB escaped)
/// the request stays well inside the moderators' 16 KiB limit.
pub(crate) const CONTEXT_BUDGET: usize = 4096;

/// Reporters remembered per message. Past them a message counts as reported enough:
/// further reports are answered and queue nothing (as a repeated one).
const MAX_REPORTERS: usize = 16;

/// A message a room showed.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    pub(crate) id: String,
    pub(crate) sender: Arc<str>,
    /// What members got: the text, or in an end-to-end-encrypted room the ciphertext.
    pub(crate) text: Arc<str>,
    pub(crate) sent_at_ms: u64,
    /// The sender's franking commitment (end-to-end-encrypted rooms).
    pub(crate) commitment: Option<Box<str>>,
    /// Members who reported it through this gateway.
    pub(crate) reporters: Vec<Arc<str>>,
}

impl Shown {
    /// Message `id` of `sender`, with `text`, sent at `sent_at_ms`; no commitment, no
    /// reporter yet.
    pub(crate) fn new(id: &str, sender: &Arc<str>, text: &str, sent_at_ms: u64) -> Self {
        Self {
            id: id.to_string(),
            sender: Arc::clone(sender),
            text: text.into(),
            sent_at_ms,
            commitment: None,
            reporters: Vec::new(),
        }
    }

    /// Remembers that `reporter` reported it; false when they already had, or when
    /// [`MAX_REPORTERS`] members have.
    pub(crate) fn reported_by(&mut self, reporter: &Arc<str>) -> bool {
        if self.reporters.len() >= MAX_REPORTERS || self.reporters.iter().any(|r| r == reporter) {
            return false;
        }
        self.reporters.push(Arc::clone(reporter));
        true
    }

    fn bytes(&self) -> usize {
        let commitment = self.commitment.as_deref().map_or(0, str::len);
        self.text.len() + self.id.len() + self.sender.len() + commitment
    }

    /// What it adds to a request's context at worst (see [`CONTEXT_BUDGET`]).
    fn context_bytes(&self) -> usize {
        let text = self.text.len().min(MAX_CONTEXT_TEXT_BYTES + '…'.len_utf8());
        2 * (self.id.len() + self.sender.len() + text) + 64
    }
}

#[derive(Debug, Default)]
struct Ring {
    messages: VecDeque<Shown>,
    bytes: usize,
}

/// Every room's latest messages.
#[derive(Debug)]
pub(crate) struct Recent {
    rooms: HashMap<String, Ring>,
    window: usize,
    /// Bytes kept for all rooms.
    bytes: usize,
    max_bytes: usize,
    /// Per sender with something kept: its bytes, and where its messages are, oldest first.
    senders: HashMap<Arc<str>, Share>,
    max_sender_bytes: usize,
}

/// What one sender holds of the budget.
#[derive(Debug, Default)]
struct Share {
    bytes: usize,
    /// Messages kept, oldest first: (room, id), and messages since gone (other reasons: a
    /// room's window, a withdrawal), skipped when met and compacted away.
    kept: VecDeque<(String, String)>,
    /// How many of `kept` are still kept.
    live: usize,
}

/// Why a message was not kept (the `reason` of the transport's counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotKept {
    /// The gateway's budget ([`MAX_TOTAL_BYTES`]) is spent, or the message is larger than a
    /// room may hold.
    Budget,
    /// Its sender's share ([`MAX_SENDER_BYTES`]) is spent.
    Sender,
}

impl NotKept {
    /// The metric label (one of [`crate::metrics::NOT_KEPT_REASONS`], in this order).
    pub(crate) fn as_str(self) -> &'static str {
        crate::metrics::NOT_KEPT_REASONS[self as usize]
    }
}

impl Recent {
    /// Keeps `window` messages per room (0: none, so nothing can be reported).
    pub(crate) fn new(window: usize) -> Self {
        Self::with_budget(window, MAX_TOTAL_BYTES)
    }

    fn with_budget(window: usize, max_bytes: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            window,
            bytes: 0,
            max_bytes,
            senders: HashMap::new(),
            // MAX_SENDER_BYTES of the default budget; never below what one room holds.
            max_sender_bytes: (max_bytes / (MAX_TOTAL_BYTES / MAX_SENDER_BYTES))
                .max(MAX_ROOM_BYTES),
        }
    }

    /// `room` showed `message`; an error when it could not be kept: past
    /// [`MAX_TOTAL_BYTES`] (or larger than a room may hold), or past its sender's share.
    pub(crate) fn shown(&mut self, room: &str, message: Shown) -> Result<(), NotKept> {
        if self.window == 0 {
            return Ok(());
        }
        let size = message.bytes();
        if size > MAX_ROOM_BYTES || self.bytes + size > self.max_bytes {
            return Err(NotKept::Budget);
        }
        if size > self.max_sender_bytes {
            return Err(NotKept::Sender);
        }
        self.make_room_for(&message.sender, size);
        let share = self.senders.entry(Arc::clone(&message.sender)).or_default();
        share.bytes += size;
        share.live += 1;
        share.kept.push_back((room.to_string(), message.id.clone()));
        let ring = match self.rooms.get_mut(room) {
            Some(ring) => ring,
            None => self.rooms.entry(room.to_string()).or_default(),
        };
        ring.bytes += size;
        self.bytes += size;
        ring.messages.push_back(message);
        let mut gone = Vec::new();
        while ring.messages.len() > self.window || ring.bytes > MAX_ROOM_BYTES {
            match ring.messages.pop_front() {
                Some(old) => {
                    ring.bytes -= old.bytes();
                    gone.push(old);
                }
                None => break,
            }
        }
        for old in gone {
            self.release(&old);
        }
        Ok(())
    }

    /// Gives `gone`'s bytes back to the budget and to its sender's share.
    fn release(&mut self, gone: &Shown) {
        let size = gone.bytes();
        self.bytes -= size;
        if let Some(share) = self.senders.get_mut(&gone.sender) {
            share.bytes = share.bytes.saturating_sub(size);
            share.live = share.live.saturating_sub(1);
            if share.live == 0 {
                self.senders.remove(&gone.sender);
            } else if share.kept.len() > 2 * share.live + 16 {
                // Mostly gone already: drop them, so the list stays in proportion.
                let rooms = &self.rooms;
                share.kept.retain(|(room, id)| {
                    rooms
                        .get(room)
                        .is_some_and(|r| r.messages.iter().any(|m| m.id == *id))
                });
            }
        }
    }

    /// Withdraws `sender`'s oldest kept messages until `size` more bytes fit its share.
    fn make_room_for(&mut self, sender: &Arc<str>, size: usize) {
        loop {
            let Some(share) = self.senders.get_mut(sender) else {
                return;
            };
            if share.bytes + size <= self.max_sender_bytes {
                return;
            }
            let Some((room, id)) = share.kept.pop_front() else {
                return;
            };
            // Gone already (a room's window, a withdrawal): nothing to give back.
            self.withdrawn(&room, &id);
        }
    }

    /// Message `id` left `room` (retracted or removed): it can no longer be reported, nor
    /// be context.
    pub(crate) fn withdrawn(&mut self, room: &str, id: &str) {
        if let Some(ring) = self.rooms.get_mut(room)
            && let Some(at) = ring.messages.iter().position(|m| m.id == id)
            && let Some(gone) = ring.messages.remove(at)
        {
            ring.bytes -= gone.bytes();
            self.release(&gone);
        }
    }

    /// `room` has no member here any more.
    pub(crate) fn forget(&mut self, room: &str) {
        if let Some(ring) = self.rooms.remove(room) {
            for gone in &ring.messages {
                self.release(gone);
            }
        }
    }

    /// Message `id` of `room`.
    pub(crate) fn find_mut(&mut self, room: &str, id: &str) -> Option<&mut Shown> {
        let ring = self.rooms.get_mut(room)?;
        ring.messages.iter_mut().find(|m| m.id == id)
    }

    /// The last `n` messages `room` shows now (retracted and removed ones are withdrawn),
    /// as many of the latest as hold `max_bytes` of text together, oldest first, whole: a
    /// late joiner's history.
    pub(crate) fn history(&self, room: &str, n: usize, max_bytes: usize) -> Vec<HistoryMessage> {
        let Some(ring) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut budget = max_bytes;
        let mut history: Vec<HistoryMessage> = ring
            .messages
            .iter()
            .rev()
            .take(n)
            .take_while(|m| {
                let fits = m.text.len() <= budget;
                budget = budget.saturating_sub(m.text.len());
                fits
            })
            .map(|m| HistoryMessage {
                id: m.id.clone(),
                sender: m.sender.to_string(),
                text: m.text.to_string(),
                sent_at_ms: m.sent_at_ms,
                commitment: m.commitment.as_deref().map(String::from),
            })
            .collect();
        history.reverse();
        history
    }

    /// The last `n` messages `room` showed before message `id` (before now when `id` is
    /// `None`), oldest first, their texts shortened to [`MAX_CONTEXT_TEXT_BYTES`], as many
    /// of the latest as fit in [`CONTEXT_BUDGET`].
    pub(crate) fn context(
        &self,
        room: &str,
        before: Option<&str>,
        n: usize,
    ) -> Vec<ContextMessage> {
        let Some(ring) = self.rooms.get(room).filter(|_| n > 0) else {
            return Vec::new();
        };
        let end = before
            .and_then(|id| ring.messages.iter().position(|m| m.id == id))
            .unwrap_or(ring.messages.len());
        let mut budget = CONTEXT_BUDGET;
        let mut context: Vec<ContextMessage> = ring
            .messages
            .range(end.saturating_sub(n)..end)
            .rev()
            .take_while(|m| {
                let fits = m.context_bytes() <= budget;
                budget = budget.saturating_sub(m.context_bytes());
                fits
            })
            .map(|m| ContextMessage {
                id: m.id.clone(),
                sender: m.sender.to_string(),
                text: shorten(&m.text),
                sent_at_ms: m.sent_at_ms,
            })
            .collect();
        context.reverse();
        context
    }
}

/// `text` cut to [`MAX_CONTEXT_TEXT_BYTES`] at a character boundary, ending in `…` when cut.
fn shorten(text: &str) -> String {
    if text.len() <= MAX_CONTEXT_TEXT_BYTES {
        return text.to_string();
    }
    let mut end = MAX_CONTEXT_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(id: &str, text: &str) -> Shown {
        Shown::new(id, &"alice".into(), text, 1)
    }

    /// A room keeps its latest messages by count and bytes; context is the messages before
    /// one, oldest first; a withdrawn message is neither reportable nor context.
    #[test]
    fn rooms_keep_their_latest_messages() {
        let mut recent = Recent::new(3);
        for id in ["a", "b", "c", "d"] {
            recent.shown("r", shown(id, id)).unwrap();
        }
        assert!(recent.find_mut("r", "a").is_none(), "past the window");
        let ids = |c: Vec<ContextMessage>| c.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(recent.context("r", Some("d"), 5)), ["b", "c"]);
        assert_eq!(ids(recent.context("r", None, 2)), ["c", "d"]);
        recent.withdrawn("r", "c");
        assert_eq!(ids(recent.context("r", None, 5)), ["b", "d"]);
        assert!(recent.find_mut("r", "c").is_none());
        // Bytes: two messages of 40 KiB do not fit in 64 KiB together.
        let big = "x".repeat(40 * 1024);
        recent.shown("r", shown("e", &big)).unwrap();
        recent.shown("r", shown("f", &big)).unwrap();
        assert!(recent.find_mut("r", "e").is_none() && recent.find_mut("r", "f").is_some());
        recent.forget("r");
        assert!(recent.context("r", None, 3).is_empty());
    }

    /// A late joiner's history is the latest messages still shown, oldest first, bounded by
    /// count and by bytes of text; a withdrawn one is not in it.
    #[test]
    fn history_is_the_latest_shown_within_its_bounds() {
        let mut recent = Recent::new(10);
        for id in ["a", "b", "c", "d"] {
            recent.shown("r", shown(id, &id.repeat(100))).unwrap();
        }
        recent.withdrawn("r", "c");
        let ids = |h: Vec<HistoryMessage>| h.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(recent.history("r", 10, 1000)), ["a", "b", "d"]);
        assert_eq!(ids(recent.history("r", 2, 1000)), ["b", "d"]);
        assert_eq!(
            ids(recent.history("r", 10, 250)),
            ["b", "d"],
            "250 bytes hold two"
        );
        assert!(recent.history("elsewhere", 10, 1000).is_empty());
    }

    /// A context text is cut at a character boundary with an ellipsis; a reporter counts
    /// once.
    #[test]
    fn context_texts_are_shortened_and_reporters_count_once() {
        let mut recent = Recent::new(10);
        let long = "é".repeat(MAX_CONTEXT_TEXT_BYTES);
        recent.shown("r", shown("a", &long)).unwrap();
        let context = recent.context("r", None, 1);
        assert!(context[0].text.len() <= MAX_CONTEXT_TEXT_BYTES + '…'.len_utf8());
        assert!(context[0].text.ends_with('…'));
        let message = recent.find_mut("r", "a").expect("kept");
        let bob: Arc<str> = "bob".into();
        assert!(message.reported_by(&bob));
        assert!(!message.reported_by(&bob));
        for n in 1..MAX_REPORTERS {
            assert!(message.reported_by(&format!("u{n}").into()));
        }
        assert!(!message.reported_by(&"one more".into()), "enough reporters");
    }

    /// Context fits its byte budget (the latest messages kept), and all rooms together
    /// stop at their budget; forgetting a room gives its bytes back.
    #[test]
    fn context_and_memory_are_bounded_in_bytes() {
        let mut recent = Recent::with_budget(10, 3000);
        let quotes = "\"".repeat(900);
        for id in ["a", "b", "c"] {
            assert!(recent.shown("r", shown(id, &quotes)).is_ok());
        }
        let context = recent.context("r", None, 10);
        let ids: Vec<&str> = context.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["b", "c"],
            "two 900-byte texts fit the 4 KiB budget, three do not"
        );
        assert_eq!(
            recent.shown("s", shown("d", &quotes)),
            Err(NotKept::Budget),
            "past the total budget"
        );
        recent.forget("r");
        assert!(recent.shown("s", shown("d", &quotes)).is_ok());
    }

    /// One sender holds at most its share of the budget across rooms (issue 26: one
    /// address filled the whole budget through e2e rooms); others are still kept; past the
    /// share the sender's own oldest messages go, so its newest stay reportable (filling
    /// the share in empty rooms first must not make later messages unreportable).
    #[test]
    fn one_sender_holds_at_most_its_share() {
        let mut recent = Recent::with_budget(100, 256 * 1024 * 1024);
        let text = "x".repeat(4096);
        let mallory = |id: String| Shown::new(&id, &"mallory".into(), &text, 1);
        for n in 0..1000 {
            let kept = recent.shown(&format!("room-{}", n % 40), mallory(format!("m{n}")));
            assert!(kept.is_ok(), "the newest is always kept");
        }
        let held = recent.senders.get("mallory").expect("a share").bytes;
        assert!(held <= MAX_SENDER_BYTES, "{held} bytes of mallory's kept");
        assert!(
            held > MAX_SENDER_BYTES / 2,
            "a sender still gets its share: {held}"
        );
        assert!(
            recent.find_mut("room-0", "m0").is_none(),
            "the oldest made room"
        );
        assert!(
            recent.shown("lobby", shown("a", "hello")).is_ok(),
            "others are kept"
        );
        assert!(recent.shown("dm", mallory("last".into())).is_ok());
        assert!(
            recent.find_mut("dm", "last").is_some(),
            "the newest is reportable"
        );
        for n in 0..40 {
            recent.forget(&format!("room-{n}"));
        }
        recent.forget("dm");
        assert_eq!(
            recent.senders.len(),
            1,
            "alice only: mallory has nothing kept"
        );
        let share = recent.senders.get("alice").expect("alice");
        assert_eq!((share.live, share.kept.len()), (1, 1));
    }
}
