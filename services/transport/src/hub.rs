//! The life of a message: accept → fan out → hand to the outbox; later the verdict (or a
//! hold deadline, or a shed) settles it. Nothing here awaits anything (but the inline
//! baseline's classify call): locks are held for microseconds and every push to a
//! connection is a `try_send`.
//!
//! Parts: [`rooms`] (connections and members), [`lifecycle`] (the message state machine, a
//! pure function), [`tracker`] (what is remembered of each message), [`deadlines`] (one
//! task for every hold deadline) and the outbox [`Handoff`].

mod deadlines;
mod lifecycle;
mod rooms;
mod tracker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use offpath_protocol::{ModerationRequest, PROTOCOL_VERSION, Priority, Verdict};
use tokio::sync::mpsc;

use crate::config::{Config, Failure, Moderation, PolicyCache, RoomPolicy};
use crate::frames::ServerFrame;
use crate::metrics as m;
use crate::outbox::Handoff;
use crate::peer::{Peer, PeerReceiver};
use deadlines::Deadlines;
use lifecycle::{Effects, Event, State, Tracked, UNMODERATED_RETRACT};
use rooms::Rooms;
use tracker::{RecentIds, Tracker};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a `send` is admitted: chosen once, from `--moderation`, when the gateway starts.
#[derive(Clone)]
pub(crate) enum Admission {
    /// Deliver now (or hold), hand the request to the outbox, apply the verdict later.
    Decoupled,
    /// The coupled baseline: each send awaits a classify call over this client first.
    Inline(async_nats::Client),
    /// Deliver, nothing else.
    Off,
}

impl Admission {
    /// The admission `moderation` asks for; `client` makes the inline calls.
    pub(crate) fn new(moderation: Moderation, client: &async_nats::Client) -> Self {
        match moderation {
            Moderation::Decoupled => Admission::Decoupled,
            Moderation::Inline => Admission::Inline(client.clone()),
            Moderation::Off => Admission::Off,
        }
    }
}

/// Where the frames of a settled message go.
struct Route {
    room: String,
    sender: Arc<str>,
    sender_peer: Weak<Peer>,
    sent_at_ms: u64,
}

/// The gateway's shared state.
pub(crate) struct Hub {
    config: Config,
    admission: Admission,
    policies: PolicyCache,
    rooms: Rooms,
    tracker: Mutex<Tracker>,
    /// Ids of verdicts applied for messages the tracker does not know, so a second copy is
    /// recognised as a duplicate. Kept apart from the tracker: a flood of such verdicts
    /// (forged ones included) only pushes out older entries of its own kind.
    unknown: Mutex<RecentIds>,
    deadlines: Arc<Deadlines>,
    outbox: Handoff,
    next_message: AtomicU64,
    boot_ms: u64,
}

impl Hub {
    /// A hub admitting sends by `admission` and handing moderation requests to `outbox`.
    /// Held messages are released by [`Hub::hold_deadlines`], a task of their own.
    pub(crate) fn new(
        mut config: Config,
        outbox: mpsc::Sender<ModerationRequest>,
        admission: Admission,
    ) -> Arc<Self> {
        if config.instance.is_empty() {
            config.instance = crate::config::default_instance();
        }
        let tracker = Tracker::new(
            config.max_tracked,
            Duration::from_millis(config.track_for_ms),
        );
        Arc::new(Self {
            rooms: Rooms::new(config.max_connections, config.send_queue),
            config,
            admission,
            policies: PolicyCache::default(),
            tracker: Mutex::new(tracker),
            unknown: Mutex::new(RecentIds::default()),
            deadlines: Arc::default(),
            outbox: Handoff::new(outbox),
            next_message: AtomicU64::new(1),
            boot_ms: now_ms(),
        })
    }

    /// Settles held messages at their hold deadlines; runs until aborted.
    pub(crate) async fn hold_deadlines(self: Arc<Self>) {
        deadlines::run(self).await;
    }

    /// The settings.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Registers a connection for `user`, or `None` at the connection limit.
    pub(crate) fn register(&self, user: Arc<str>) -> Option<(Arc<Peer>, PeerReceiver)> {
        self.rooms.register(user)
    }

    /// Removes a closed connection from its rooms and the registry.
    pub(crate) fn unregister(&self, peer: &Peer, rooms: impl IntoIterator<Item = String>) {
        self.rooms.unregister(peer, rooms);
    }

    /// Open connections.
    pub(crate) fn connections(&self) -> usize {
        self.rooms.connections()
    }

    /// Adds `peer` to `room`.
    pub(crate) fn join(&self, peer: &Arc<Peer>, room: &str) {
        self.rooms.join(peer, room);
    }

    /// Removes `peer` from `room`.
    pub(crate) fn leave(&self, peer: &Peer, room: &str) {
        self.rooms.leave(peer, room);
    }

    /// Queues `frame` to every member of `room`; returns how many got it.
    pub(crate) fn fan_out(&self, room: &str, frame: &Utf8Bytes) -> usize {
        self.rooms.fan_out(room, frame)
    }

    /// Closes every connection with "going away".
    pub(crate) fn close_all(&self) {
        self.rooms.close_all();
    }

    /// The policy of `room`.
    pub(crate) fn policy(&self, room: &str) -> RoomPolicy {
        self.policies.get(&self.config, room)
    }

    /// A new request for `text` from `peer` in `room`: assigns the id and the deadline,
    /// acks it to the sender.
    pub(crate) fn new_request(
        &self,
        peer: &Peer,
        room: &str,
        text: String,
        client_msg_id: Option<String>,
        policy: RoomPolicy,
    ) -> ModerationRequest {
        let seq = self.next_message.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}.{:x}.{seq:x}", self.config.instance, self.boot_ms);
        let sent_at_ms = now_ms();
        metrics::counter!(m::MESSAGES).increment(1);
        let ack = ServerFrame::Ack {
            client_msg_id,
            id: id.clone(),
            room: room.to_string(),
            held: policy.hold,
        };
        peer.push(&ack.encode());
        // A deadline only where a late answer is of no use: a fail-closed hold room drops
        // the message at its hold deadline. Everything else stays (or becomes) visible and
        // must be classified however late, so a block can still retract it.
        let deadline_ms = (policy.hold && policy.failure == Failure::Closed)
            .then(|| sent_at_ms + self.config.hold_deadline_ms);
        ModerationRequest {
            v: PROTOCOL_VERSION,
            id,
            tenant: self.config.tenant.clone(),
            room: room.to_string(),
            sender: peer.user.to_string(),
            text,
            sent_at_ms,
            deadline_ms,
            priority: Some(if policy.hold {
                Priority::High
            } else {
                Priority::Normal
            }),
            policy: None,
        }
    }

    /// Admits a validated `send` from `peer` (a member of `room`) the way the gateway was
    /// started to: [`Hub::accept`], or the inline baseline's classify call first.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        room: &str,
        text: String,
        client_msg_id: Option<String>,
        received: Instant,
    ) {
        match &self.admission {
            Admission::Inline(client) => {
                let client = client.clone();
                crate::inline::accept(self, &client, peer, room, text, client_msg_id, received)
                    .await;
            }
            Admission::Decoupled | Admission::Off => {
                self.accept(peer, room, text, client_msg_id, received);
            }
        }
    }

    /// Accepts a validated `send` from `peer` (a member of `room`): assigns the id, acks,
    /// fans out (unless the room holds messages) and hands the request to the outbox.
    /// Never waits.
    pub(crate) fn accept(
        &self,
        peer: &Arc<Peer>,
        room: &str,
        text: String,
        client_msg_id: Option<String>,
        received: Instant,
    ) {
        let mut policy = self.policy(room);
        let off = matches!(self.admission, Admission::Off);
        if off {
            // Moderation disabled (the load scenarios' floor): deliver, nothing else.
            policy.hold = false;
        }
        let request = self.new_request(peer, room, text, client_msg_id, policy);
        if !policy.hold {
            self.fan_out(room, &message_frame(&request));
            metrics::histogram!(m::FANOUT_SECONDS).record(received.elapsed().as_secs_f64());
        }
        if off {
            return;
        }
        let state = if policy.hold {
            metrics::gauge!(m::HELD).increment(1.0);
            State::Held {
                text: request.text.clone(),
            }
        } else {
            State::Delivered
        };
        let tracked = Tracked {
            room: room.to_string(),
            sender: Arc::clone(&peer.user),
            sender_peer: Arc::downgrade(peer),
            sent_at_ms: request.sent_at_ms,
            accepted: received,
            policy,
            state,
            settled: false,
        };
        let id = request.id.clone();
        lock(&self.tracker).insert(id.clone(), tracked, received);
        if policy.hold {
            let at = tokio::time::Instant::now() + self.config.hold_deadline();
            self.deadlines.push(at, id.clone());
        }
        if let Err(reason) = self.outbox.try_hand(request) {
            let reason = format!("outbox_{reason}");
            self.settle(&id, &Event::Shed { reason: &reason }, None);
        }
    }

    /// The outbox has stored (or finally shed) `n` requests.
    pub(crate) fn outbox_settled(&self, n: usize) {
        self.outbox.settled(n);
    }

    /// Requests not yet stored in JetStream.
    pub(crate) fn outbox_depth(&self) -> i64 {
        self.outbox.depth()
    }

    /// Applies a verdict from the moderator. Applying the same verdict twice changes
    /// nothing.
    pub(crate) fn apply_verdict(&self, verdict: Verdict) {
        let event = Event::Verdict {
            action: verdict.action,
            reason: verdict.reason.as_deref(),
        };
        self.settle(&verdict.id, &event, Some(&verdict));
    }

    /// The hold deadline of `id` passed: if it is still held, the room's failure policy
    /// decides.
    pub(crate) fn hold_deadline(&self, id: &str) {
        self.settle(id, &Event::HoldDeadline, None);
    }

    /// Settles message `id`. `verdict` gives room and sender when the message is unknown
    /// (forgotten, or accepted before this process restarted). The tracker lock covers the
    /// state change only; metrics are updated and frames encoded and queued after it is
    /// released (accepting sends takes the same lock).
    fn settle(&self, id: &str, event: &Event<'_>, verdict: Option<&Verdict>) {
        let now = Instant::now();
        let mut tracker = lock(&self.tracker);
        let (route, effects) = match tracker.get_mut(id) {
            Some(tracked) => (Route::of(tracked), lifecycle::settle(tracked, event, now)),
            None => {
                drop(tracker);
                let Some(verdict) = verdict else { return };
                (
                    Route::of_verdict(verdict),
                    self.unknown_effects(id, verdict),
                )
            }
        };
        self.apply(id, event, verdict, &route, effects);
    }

    /// What a verdict for a message the tracker does not know does. Rooms live in one
    /// gateway: only a message this gateway accepted (its id carries this instance's name)
    /// can be on its clients' screens, forgotten by the tracker's bounds or accepted before
    /// a restart with the same `--instance`. Such a verdict is applied from its own fields:
    /// a block is retracted from whoever is in the room now. Another gateway's (or a
    /// forged) id is ignored: forwarding it would only let a verdict flood fill every
    /// member's send queue. Never remembered in the tracker: a flood must not push real
    /// messages out of it.
    fn unknown_effects(&self, id: &str, verdict: &Verdict) -> Effects {
        let mine = id
            .strip_prefix(self.config.instance.as_str())
            .is_some_and(|rest| rest.starts_with('.'));
        let ignored = if !mine {
            "not_ours"
        } else if !lock(&self.unknown).insert(id) {
            "duplicate"
        } else {
            let policy = self.policy(&verdict.room);
            return lifecycle::settle_unknown(verdict.action, policy.failure);
        };
        Effects {
            ignored: Some(ignored),
            ..Effects::default()
        }
    }

    /// Carries out `effects` of `event` on message `id`: metrics, then frames.
    fn apply(
        &self,
        id: &str,
        event: &Event<'_>,
        verdict: Option<&Verdict>,
        route: &Route,
        effects: Effects,
    ) {
        record(event, &effects);
        if !effects.notify_sender {
            return;
        }
        let to_sender = ServerFrame::Verdict {
            id: id.to_string(),
            room: route.room.clone(),
            action: event.action().as_str().to_string(),
            scores: verdict.map(|v| v.scores.clone()).unwrap_or_default(),
            reason: event.reason().map(str::to_string),
        }
        .encode();
        let room = &route.room;
        (self.rooms).to_sender(&route.sender_peer, room, &route.sender, &to_sender);
        if let Some(text) = effects.deliver {
            let frame =
                crate::frames::encode_message(id, room, &route.sender, &text, route.sent_at_ms);
            self.fan_out(room, &frame);
        }
        if let Some(reason) = effects.retract {
            let frame = ServerFrame::Retract {
                id: id.to_string(),
                room: room.clone(),
                reason: reason.to_string(),
            };
            self.fan_out(room, &frame.encode());
        }
    }

    /// Messages held in `hold` rooms right now.
    pub(crate) fn held(&self) -> usize {
        lock(&self.tracker).held()
    }
}

impl Route {
    fn of(tracked: &Tracked) -> Self {
        Self {
            room: tracked.room.clone(),
            sender: Arc::clone(&tracked.sender),
            sender_peer: tracked.sender_peer.clone(),
            sent_at_ms: tracked.sent_at_ms,
        }
    }

    fn of_verdict(verdict: &Verdict) -> Self {
        Self {
            room: verdict.room.clone(),
            sender: verdict.sender.as_str().into(),
            sender_peer: Weak::new(),
            sent_at_ms: 0,
        }
    }
}

/// The metric updates of settling a message with `event`.
fn record(event: &Event<'_>, effects: &Effects) {
    if let Some(reason) = effects.ignored {
        metrics::counter!(m::VERDICTS_IGNORED, "reason" => reason).increment(1);
    }
    if let Some(outcome) = effects.hold_outcome {
        metrics::gauge!(m::HELD).decrement(1.0);
        metrics::counter!(m::HOLD_SETTLED, "outcome" => outcome).increment(1);
    }
    if effects.count_verdict {
        metrics::counter!(m::VERDICTS, "action" => event.action().as_str()).increment(1);
    }
    if let Some(lag) = effects.lag {
        metrics::histogram!(m::VERDICT_LAG_SECONDS).record(lag.as_secs_f64());
    }
    if effects.retract == Some(UNMODERATED_RETRACT) {
        metrics::counter!(m::FAIL_CLOSED_RETRACTS).increment(1);
    }
}

/// The `message` frame of a request, encoded from borrowed fields (this is the send path:
/// no copy of the text just to serialize it).
pub(crate) fn message_frame(request: &ModerationRequest) -> Utf8Bytes {
    crate::frames::encode_message(
        &request.id,
        &request.room,
        &request.sender,
        &request.text,
        request.sent_at_ms,
    )
}

#[cfg(test)]
mod tests;
