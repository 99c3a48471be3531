//! One websocket connection: a reader that handles the client's frames (never waiting on
//! NATS or a model) and a writer that drains the connection's bounded send queue. Generic
//! over `Sink`/`Stream`, so tests can drive it with channels.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};

use crate::auth::{self, RoomGrant};
use crate::frames::Close;
use crate::frames::{self, ClientFrame, ErrorCode, FrameError, ServerFrame};
use crate::hub::Hub;
use crate::metrics as m;
use crate::peer::{Peer, PeerReceiver};

/// How long the writer keeps trying to flush queued frames and the close frame once the
/// connection is closing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The most frames one client frame makes for its own connection: a `send` gets an ack and
/// its echo (an error frame instead of both when refused; a rate-limit notice besides).
const OWN_FRAMES: usize = 3;

mod bucket;

pub(crate) use bucket::TokenBucket;
pub use bucket::send_cost;

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
    let config = hub.config();
    let now = Instant::now();
    let reader = Reader {
        hub: Arc::clone(&hub),
        peer: Arc::clone(&peer),
        rooms: HashSet::new(),
        allowed,
        bucket: TokenBucket::new(config.limits.rate_per_second, config.limits.rate_burst, now),
        // Never tighter than the send limit: a client sending at its allowed message rate
        // must not be refused for the frames that carry the messages.
        frames: TokenBucket::new(
            config
                .limits
                .frame_rate_per_second
                .max(config.limits.rate_per_second),
            config.limits.frame_burst.max(config.limits.rate_burst),
            now,
        ),
        refused_in_a_row: 0,
        histories_left: frames::HISTORY_JOINS,
    };
    let idle = config.limits.idle_timeout.get();
    let ping_every = config.limits.ping_interval.get();
    let mut stream = stream;
    let read = async {
        let rooms = reader.run(&mut stream, close, idle).await;
        peer.close_with(Close::GONE);
        rooms
    };
    let write = async {
        write(rx, sink, ping_every).await;
        peer.close_with(Close::GONE);
    };
    // Each side ends the other: the reader when the client goes, the writer when the
    // connection is closed by the gateway (or its socket fails).
    let (rooms, ()) = tokio::join!(read, write);
    hub.unregister(&peer, rooms);
    linger(&mut stream).await;
}

/// After the gateway's close frame, reads (and drops) what the client still sends until
/// its own close frame, for [`CLOSE_GRACE`] at most. Closing a socket with unread data in
/// it sends a TCP reset, and a reset makes the client's kernel drop what it had not read
/// yet: the close frame that says why (a flooder, a slow client) would be lost.
async fn linger<R, E>(stream: &mut R)
where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let drain = async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
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
    /// `send` frames (`--rate-per-second`).
    bucket: TokenBucket,
    /// Every frame (`--frame-rate-per-second`).
    frames: TokenBucket,
    /// Frames refused by `frames` since the last one it let through.
    refused_in_a_row: u32,
    /// `join`s left that get the room's history ([`frames::HISTORY_JOINS`]).
    histories_left: usize,
}

impl Reader {
    async fn run<R, E>(
        mut self,
        stream: &mut R,
        mut close: tokio::sync::watch::Receiver<Option<Close>>,
        idle: Duration,
    ) -> HashSet<String>
    where
        R: Stream<Item = Result<Message, E>> + Unpin,
        E: std::fmt::Display,
    {
        loop {
            // Room for what the next frame makes for this connection itself; a client that
            // reads none of it for `idle` is closed as a slow client.
            tokio::select! {
                _ = closing(&mut close) => return self.rooms,
                room = self.peer.room_for(OWN_FRAMES) => if !room { return self.rooms },
                () = tokio::time::sleep(idle) => {
                    self.peer.close_slow();
                    return self.rooms;
                }
            }
            // Any frame, a pong to the writer's ping included, proves the client is there.
            let next = tokio::select! {
                _ = closing(&mut close) => return self.rooms,
                next = stream.next() => next,
                () = tokio::time::sleep(idle) => {
                    self.peer.close_with(Close::IDLE);
                    return self.rooms;
                }
            };
            let message = match next {
                Some(Ok(Message::Close(_))) | None => return self.rooms,
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    self.read_failed(&err.to_string());
                    return self.rooms;
                }
            };
            let received = Instant::now();
            if !self.charge(received) {
                if self.peer.is_closed() {
                    return self.rooms;
                }
                continue;
            }
            let result = match message {
                Message::Text(text) => self.handle(&text, received).await,
                Message::Binary(_) => Err(FrameError::new(
                    ErrorCode::BinaryFrame,
                    "binary frames are not part of the protocol; send JSON text",
                )),
                Message::Close(_) | Message::Ping(_) | Message::Pong(_) => Ok(()),
            };
            if let Err(error) = result {
                metrics::counter!(m::FRAME_ERRORS, "code" => error.code.as_str()).increment(1);
                self.peer.push(&ServerFrame::error(&error).encode());
            }
        }
    }

    /// A read error: an oversized message closes with 1009; anything else just ends.
    fn read_failed(&self, text: &str) {
        if text.contains("too long") || text.contains("too big") {
            self.peer.close_with(Close {
                code: 1009,
                reason: "frame_too_large",
            });
        }
        tracing::debug!(peer = self.peer.id, "websocket read: {text}");
    }

    /// Charges a frame of any kind to the frame rate. A refused frame is counted; the
    /// first of a run gets an error frame (one per run: an error per frame would let the
    /// client fill its own send queue at our expense); a run past `--flood-close-after`
    /// closes the connection (1008 `flood`). Returns whether the frame may be handled.
    fn charge(&mut self, received: Instant) -> bool {
        if self.frames.take(received) {
            self.refused_in_a_row = 0;
            return true;
        }
        self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
        metrics::counter!(m::FRAMES_LIMITED).increment(1);
        let config = self.hub.config();
        if self.refused_in_a_row == 1 {
            let error = FrameError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} frames per second (bursts of {}); frames are dropped until \
                     the rate falls, and a connection that keeps on is closed",
                    config
                        .limits
                        .frame_rate_per_second
                        .max(config.limits.rate_per_second),
                    config.limits.frame_burst.max(config.limits.rate_burst)
                ),
            );
            metrics::counter!(m::FRAME_ERRORS, "code" => error.code.as_str()).increment(1);
            self.peer.push(&ServerFrame::error(&error).encode());
        }
        if self.refused_in_a_row > config.limits.flood_close_after {
            self.peer.close_with(Close::FLOOD);
        }
        false
    }

    /// A `send` or `report` to `room` may go ahead: the connection is a member, and within
    /// its send rate (messages and reports together; a message costs by its length,
    /// [`send_cost`]).
    fn may_post(
        &mut self,
        room: &str,
        received: Instant,
        cost: f64,
        doing: &str,
    ) -> Result<(), FrameError> {
        if !self.rooms.contains(room) {
            return Err(FrameError::new(
                ErrorCode::NotAMember,
                format!("join room {room:?} before {doing}"),
            ));
        }
        if !self.bucket.take_cost(received, cost) {
            let config = self.hub.config();
            return Err(FrameError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} messages and reports per second (bursts of {}; a message \
                     counts once per {} bytes of text)",
                    config.limits.rate_per_second,
                    config.limits.rate_burst,
                    config.limits.send_cost_bytes
                ),
            ));
        }
        Ok(())
    }

    fn join(&mut self, room: String) -> Result<(), FrameError> {
        auth::check_join(&self.allowed, &room)?;
        if !self.rooms.contains(&room) {
            let max = self.hub.config().limits.max_rooms_per_connection;
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
        let with_history = self.histories_left > 0;
        self.histories_left = self.histories_left.saturating_sub(1);
        self.peer
            .push(&self.hub.joined(room, with_history).encode());
        Ok(())
    }

    async fn handle(&mut self, text: &Utf8Bytes, received: Instant) -> Result<(), FrameError> {
        match frames::parse(text, self.hub.config().messages.max_text_bytes)? {
            ClientFrame::Join { room } => self.join(room),
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
                commitment,
            } => {
                let cost = send_cost(text.len(), self.hub.config().limits.send_cost_bytes);
                self.may_post(&room, received, cost, "sending to it")?;
                self.hub
                    .admit(&self.peer, &room, text, client_msg_id, commitment, received)
                    .await
            }
            ClientFrame::Report {
                room,
                id,
                reason,
                text,
                key,
            } => {
                // A report costs what a message does: a flood of reports is a flood.
                self.may_post(&room, received, 1.0, "reporting its messages")?;
                let report = crate::hub::ReportFrame {
                    room: &room,
                    id: &id,
                    reason,
                    text,
                    key,
                };
                self.hub.report(&self.peer, report)?;
                self.peer.push(&ServerFrame::Reported { id, room }.encode());
                Ok(())
            }
        }
    }
}

/// Writes queued frames until the connection closes, pinging every `ping_every`, then
/// (briefly) the rest of the queue and a close frame.
async fn write<S>(mut rx: PeerReceiver, mut sink: S, ping_every: Duration)
where
    S: Sink<Message> + Unpin,
{
    let start = tokio::time::Instant::now() + ping_every;
    let mut ping = tokio::time::interval_at(start, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = loop {
        let message = tokio::select! {
            biased;
            close = closing(&mut rx.close) => break close,
            frame = rx.frames.recv() => match frame {
                Some(frame) => Message::Text(frame),
                None => return,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        // A send blocked on a full socket is abandoned when the close signal comes, so a
        // stuck client cannot hold this task.
        let send = sink.send(message);
        let mut signal = rx.close.clone();
        tokio::select! {
            result = send => if result.is_err() { return },
            close = closing(&mut signal) => break close,
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
    use crate::hub::Admission;
    use crate::{Config, LimitsConfig};

    /// A client that sends a burst within its rate limit is served, not closed as a slow
    /// client by its own acks and echoes: 200 `send` frames already read from the socket
    /// (one poll each, never pending) make 400 frames for a 256-frame send queue, and the
    /// reader must let the writer drain them rather than overflow it.
    #[tokio::test]
    async fn a_burst_of_sends_does_not_overflow_its_own_send_queue() {
        const SENDS: usize = 200;
        let config = Config {
            tenant: "acme".into(),
            limits: LimitsConfig {
                rate_burst: 10_000.0,
                frame_burst: 10_000.0,
                ..Config::default().limits
            },
            ..Config::default()
        };
        assert!(
            2 * SENDS > config.limits.send_queue,
            "the burst must outgrow the queue"
        );
        let (outbox, _requests) = tokio::sync::mpsc::channel(4 * SENDS);
        let hub = Hub::new(config, outbox, Admission::Decoupled);
        let (peer, rx) = hub.register("alice".into()).expect("registered");
        let mut frames = vec![r#"{"type":"join","room":"lobby"}"#.to_string()];
        frames.extend((0..SENDS).map(|n| {
            format!(r#"{{"type":"send","room":"lobby","text":"hello {n}","client_msg_id":"m{n}"}}"#)
        }));
        let input = futures::stream::iter(
            frames
                .into_iter()
                .map(|f| Ok::<_, std::convert::Infallible>(Message::Text(f.into()))),
        )
        .chain(futures::stream::pending());
        let (sink, mut written) = futures::channel::mpsc::unbounded::<Message>();
        let serving = tokio::spawn(serve(
            Arc::clone(&hub),
            Arc::clone(&peer),
            rx,
            sink,
            input,
            RoomGrant::any(),
        ));
        let (mut acks, mut echoes) = (0, 0);
        while acks < SENDS || echoes < SENDS {
            let next = tokio::time::timeout(Duration::from_secs(10), written.next()).await;
            let Ok(Some(Message::Text(text))) = next else {
                panic!("served {acks} acks and {echoes} echoes, then: {next:?}");
            };
            let frame: serde_json::Value = serde_json::from_str(&text).expect("json");
            match frame["type"].as_str() {
                Some("ack") => acks += 1,
                Some("message") => echoes += 1,
                _ => {}
            }
        }
        assert!(!peer.is_closed(), "the connection is still open");
        serving.abort();
    }

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

    /// A long text goes at once and puts the bucket in debt: at 10 tokens a second, a 4 KiB
    /// text (64 tokens) from a full bucket of 20 leaves the connection silent for 4.5 s (a
    /// sustained sender of such texts sends one per 6.4 s); a chat line costs one.
    #[test]
    fn long_texts_cost_by_their_length() {
        assert_eq!(send_cost(0, 64), 1.0);
        assert_eq!(send_cost(64, 64), 1.0);
        assert_eq!(send_cost(65, 64), 2.0);
        assert_eq!(send_cost(4096, 64), 64.0);
        assert_eq!(send_cost(4096, 0), 1.0, "0: the old rule");
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 20.0, start);
        assert!(bucket.take_cost(start, send_cost(4096, 64)));
        let at = |ms| start + Duration::from_millis(ms);
        assert!(!bucket.take_cost(at(4_400), 1.0), "still in debt");
        assert!(bucket.take_cost(at(4_600), send_cost(4096, 64)));
        assert!(
            !bucket.take_cost(at(10_800), 1.0),
            "about one per 6.4 s after"
        );
        assert!(bucket.take_cost(at(11_000), 1.0));
    }
}
