//! One connection as the rest of the gateway sees it: a bounded queue of encoded frames and
//! a way to close it. Pushing never waits: a full queue closes the connection (a slow
//! client), so one reader that stalls cannot slow down a room.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, watch};

use crate::frames::Close;
use crate::metrics as m;

/// A connection's outgoing side, shared by the rooms it is in.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Process-unique connection number.
    pub(crate) id: u64,
    /// The authenticated user.
    pub(crate) user: Arc<str>,
    queue: mpsc::Sender<Utf8Bytes>,
    close: watch::Sender<Option<Close>>,
    closed: AtomicBool,
    /// When the user's account was created (ms since the epoch), as its token vouches.
    account_created_ms: std::sync::OnceLock<u64>,
}

/// The connection's end of a [`Peer`]: frames to write and the close signal.
#[derive(Debug)]
pub(crate) struct PeerReceiver {
    /// Frames to write, in order.
    pub(crate) frames: mpsc::Receiver<Utf8Bytes>,
    /// Becomes `Some` when the connection must close.
    pub(crate) close: watch::Receiver<Option<Close>>,
}

impl Peer {
    /// A peer with a send queue of `capacity` frames.
    pub(crate) fn new(id: u64, user: Arc<str>, capacity: usize) -> (Arc<Self>, PeerReceiver) {
        let (queue, frames) = mpsc::channel(capacity.max(1));
        let (close, close_rx) = watch::channel(None);
        let peer = Arc::new(Self {
            id,
            user,
            queue,
            close,
            closed: AtomicBool::new(false),
            account_created_ms: std::sync::OnceLock::new(),
        });
        (
            peer,
            PeerReceiver {
                frames,
                close: close_rx,
            },
        )
    }

    /// Records when the user's account was created, as its credential vouches (once).
    pub(crate) fn vouch_account_created(&self, ms: Option<u64>) {
        if let Some(ms) = ms {
            let _ = self.account_created_ms.set(ms);
        }
    }

    /// When the user's account was created, if its credential said.
    pub(crate) fn account_created_ms(&self) -> Option<u64> {
        self.account_created_ms.get().copied()
    }

    /// Queues `frame` without waiting. A full queue closes the connection as a slow client;
    /// returns whether the frame was queued.
    pub(crate) fn push(&self, frame: &Utf8Bytes) -> bool {
        match self.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Waits until the send queue has room for `frames` more frames (then leaves the room
    /// free for whoever pushes). The reader waits here before each client frame, so the
    /// frames a client causes for itself (ack, echo, error) are paced by its own writer:
    /// a burst the client was allowed to send cannot overflow its queue and close it as a
    /// slow client. Fan-out to other members stays non-blocking ([`Peer::push`]). Returns
    /// false if the connection is gone.
    pub(crate) async fn room_for(&self, frames: usize) -> bool {
        let frames = frames.min(self.queue.max_capacity());
        self.queue.reserve_many(frames).await.is_ok()
    }

    /// Closes the connection as a slow client (counted once).
    pub(crate) fn close_slow(&self) {
        if self.close_with(Close::SLOW) {
            metrics::counter!(m::SLOW_CLIENTS).increment(1);
        }
    }

    /// Asks the connection to close; only the first reason counts. Returns whether this
    /// call was the first.
    pub(crate) fn close_with(&self, close: Close) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        if close != Close::GONE {
            metrics::counter!(m::DISCONNECTS, "reason" => close.reason).increment(1);
        }
        self.close.send_replace(Some(close));
        true
    }

    /// Whether the connection is closing or closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.queue.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full queue closes the peer as slow, once; later pushes are refused without waiting.
    #[test]
    fn full_queue_closes_as_slow() {
        let (peer, mut rx) = Peer::new(1, "u".into(), 2);
        let frame = Utf8Bytes::from_static("{}");
        assert!(peer.push(&frame) && peer.push(&frame));
        assert!(!peer.push(&frame));
        assert_eq!(*rx.close.borrow_and_update(), Some(Close::SLOW));
        assert!(!peer.close_with(Close::SHUTDOWN), "first reason wins");
        assert!(peer.is_closed());
        assert_eq!(rx.frames.try_recv().as_deref().ok(), Some("{}"));
    }
}
