//! One websocket connection: a reader that handles the client's frames (never waiting on
//! NATS or a model) and a writer that drains the connection's bounded send queue. Generic
//! over `Sink`/`Stream`, so tests can drive it with channels.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};

use crate::auth::{self, RoomGrant};
use crate::frames::{self, ClientFrame, ErrorCode, FrameError, ServerFrame};
use crate::hub::Hub;
use crate::metrics as m;
use crate::peer::{Close, Peer, PeerReceiver};

/// How long the writer keeps trying to flush queued frames and the close frame once the
/// connection is closing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves a registered connection until the client leaves or the gateway closes it.
pub(crate) async fn serve<S, R, E>(
    hub: Arc<Hub>,
    peer: Arc<Peer>,
    rx: PeerReceiver,
    sink: S,
    stream: R,
    allowed: RoomGrant,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let close = rx.close.clone();
    let reader = Reader {
        hub: Arc::clone(&hub),
        peer: Arc::clone(&peer),
        rooms: HashSet::new(),
        allowed,
        bucket: TokenBucket::new(
            hub.config().rate_per_second,
            hub.config().rate_burst,
            Instant::now(),
        ),
    };
    let read = async {
        let rooms = reader.run(stream, close).await;
        peer.close_with(Close::GONE);
        rooms
    };
    let write = async {
        write(rx, sink).await;
        peer.close_with(Close::GONE);
    };
    // Each side ends the other: the reader when the client goes, the writer when the
    // connection is closed by the gateway (or its socket fails).
    let (rooms, ()) = tokio::join!(read, write);
    hub.unregister(&peer, rooms);
}

/// Waits for the close signal; `None` if the peer itself is gone.
async fn closing(close: &mut tokio::sync::watch::Receiver<Option<Close>>) -> Option<Close> {
    close.wait_for(Option::is_some).await.ok().and_then(|c| *c)
}

struct Reader {
    hub: Arc<Hub>,
    peer: Arc<Peer>,
    rooms: HashSet<String>,
    /// The rooms this connection's identity may join.
    allowed: RoomGrant,
    bucket: TokenBucket,
}

impl Reader {
    async fn run<R, E>(
        mut self,
        mut stream: R,
        mut close: tokio::sync::watch::Receiver<Option<Close>>,
    ) -> HashSet<String>
    where
        R: Stream<Item = Result<Message, E>> + Unpin,
        E: std::fmt::Display,
    {
        loop {
            let next = tokio::select! {
                _ = closing(&mut close) => return self.rooms,
                next = stream.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    let text = err.to_string();
                    if text.contains("too long") || text.contains("too big") {
                        self.peer.close_with(Close {
                            code: 1009,
                            reason: "frame_too_large",
                        });
                    }
                    tracing::debug!(peer = self.peer.id, "websocket read: {text}");
                    return self.rooms;
                }
                None => return self.rooms,
            };
            let received = Instant::now();
            let result = match message {
                Message::Text(text) => self.handle(&text, received).await,
                Message::Binary(_) => Err(FrameError::new(
                    ErrorCode::BinaryFrame,
                    "binary frames are not part of the protocol; send JSON text",
                )),
                Message::Close(_) => return self.rooms,
                Message::Ping(_) | Message::Pong(_) => Ok(()),
            };
            if let Err(error) = result {
                metrics::counter!(m::FRAME_ERRORS, "code" => error.code.as_str()).increment(1);
                self.peer.push(&ServerFrame::error(&error).encode());
            }
        }
    }

    async fn handle(&mut self, text: &Utf8Bytes, received: Instant) -> Result<(), FrameError> {
        match frames::parse(text, self.hub.config().max_text_bytes)? {
            ClientFrame::Join { room } => {
                auth::check_join(&self.allowed, &room)?;
                if !self.rooms.contains(&room) {
                    let max = self.hub.config().max_rooms_per_connection;
                    if self.rooms.len() >= max {
                        return Err(FrameError::new(
                            ErrorCode::TooManyRooms,
                            format!("a connection may be in at most {max} rooms"),
                        ));
                    }
                    self.hub.join(&self.peer, &room);
                    self.rooms.insert(room.clone());
                }
                // Joining twice is harmless; the answer says the connection is a member.
                self.peer.push(&ServerFrame::Joined { room }.encode());
                Ok(())
            }
            ClientFrame::Leave { room } => {
                if self.rooms.remove(&room) {
                    self.hub.leave(&self.peer, &room);
                }
                self.peer.push(&ServerFrame::Left { room }.encode());
                Ok(())
            }
            ClientFrame::Send {
                room,
                text,
                client_msg_id,
            } => {
                if !self.rooms.contains(&room) {
                    return Err(FrameError::new(
                        ErrorCode::NotAMember,
                        format!("join room {room:?} before sending to it"),
                    ));
                }
                if !self.bucket.take(received) {
                    return Err(FrameError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "at most {} messages per second (bursts of {})",
                            self.hub.config().rate_per_second,
                            self.hub.config().rate_burst
                        ),
                    ));
                }
                self.hub
                    .admit(&self.peer, &room, text, client_msg_id, received)
                    .await;
                Ok(())
            }
        }
    }
}

/// Writes queued frames until the connection closes, then (briefly) the rest of the queue
/// and a close frame.
async fn write<S>(mut rx: PeerReceiver, mut sink: S)
where
    S: Sink<Message> + Unpin,
{
    let close = loop {
        tokio::select! {
            biased;
            close = closing(&mut rx.close) => break close,
            frame = rx.frames.recv() => match frame {
                Some(frame) => {
                    // A send blocked on a full socket is abandoned when the close signal
                    // comes (the select above), so a stuck client cannot hold this task.
                    let send = sink.send(Message::Text(frame));
                    let mut signal = rx.close.clone();
                    tokio::select! {
                        result = send => if result.is_err() { return },
                        close = closing(&mut signal) => break close,
                    }
                }
                None => return,
            },
        }
    };
    let Some(close) = close else { return };
    let finish = async {
        if close != Close::SLOW {
            while let Ok(frame) = rx.frames.try_recv() {
                if sink.send(Message::Text(frame)).await.is_err() {
                    return;
                }
            }
        }
        if close != Close::GONE {
            let frame = CloseFrame {
                code: close.code,
                reason: Utf8Bytes::from_static(close.reason),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket allows a burst, then refills at its rate.
    #[test]
    fn token_bucket() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3.0, start);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        assert!(bucket.take(start + Duration::from_millis(500)));
        assert!(!bucket.take(start + Duration::from_millis(500)));
    }
}
