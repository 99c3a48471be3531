//! One connection as the rest of the gateway sees it: a bounded queue of encoded frames and
//! a way to close it. Pushing never waits: a full queue closes the connection (a slow
//! client), so one reader that stalls cannot slow down a room.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, watch};

use crate::metrics as m;

/// Why the gateway closes a connection: a websocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    /// Websocket close code.
    pub(crate) code: u16,
    /// Reason sent in the close frame, also the `reason` metric label.
    pub(crate) reason: &'static str,
}

impl Close {
    /// The client's send queue was full (close code 1008, policy violation).
    pub(crate) const SLOW: Close = Close {
        code: 1008,
        reason: "slow_client",
    };
    /// The gateway is shutting down (1001, going away).
    pub(crate) const SHUTDOWN: Close = Close {
        code: 1001,
        reason: "shutdown",
    };
    /// The connection limit was reached (1013, try again later).
    pub(crate) const FULL: Close = Close {
        code: 1013,
        reason: "max_connections",
    };
    /// The client's address holds `--max-connections-per-ip` already (1013).
    pub(crate) const PER_IP: Close = Close {
        code: 1013,
        reason: "max_connections_per_ip",
    };
    /// The user holds `--max-connections-per-user` already (1013).
    pub(crate) const PER_USER: Close = Close {
        code: 1013,
        reason: "max_connections_per_user",
    };
    /// No frame from the client for `--idle-timeout-ms` (1001, going away).
    pub(crate) const IDLE: Close = Close {
        code: 1001,
        reason: "idle_timeout",
    };
    /// The client kept sending past its frame rate (1008, policy violation).
    pub(crate) const FLOOD: Close = Close {
        code: 1008,
        reason: "flood",
    };
    /// The client closed or the socket failed: nothing to tell it.
    pub(crate) const GONE: Close = Close {
        code: 1000,
        reason: "closed",
    };
}

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
        });
        (
            peer,
            PeerReceiver {
                frames,
                close: close_rx,
            },
        )
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
