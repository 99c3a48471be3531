//! Rooms, members and the life of a message: accept → fan out → hand to the outbox; later
//! the verdict (or a hold deadline, or a shed) settles it. Nothing here awaits anything:
//! locks are held for microseconds and every push to a connection is a `try_send`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use offpath_protocol::{Action, ModerationRequest, PROTOCOL_VERSION, Priority, Verdict};
use tokio::sync::mpsc;

use crate::config::{Config, Failure, Moderation, PolicyCache, RoomPolicy};
use crate::frames::ServerFrame;
use crate::metrics as m;
use crate::peer::{Close, Peer, PeerReceiver};
use crate::tracker::{State, Tracked, Tracker};

/// Milliseconds since the Unix epoch: the contract's clock.
pub use offpath_protocol::now_ms;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a message is settled.
struct Settle<'a> {
    action: Action,
    scores: BTreeMap<String, f32>,
    reason: Option<&'a str>,
    /// A real verdict (final), or a local decision a later verdict may still refine
    /// (hold deadline in a fail-open room).
    final_: bool,
}

/// What settling a message does once the tracker lock is released.
struct Effects {
    room: String,
    sender: Arc<str>,
    sender_peer: std::sync::Weak<Peer>,
    /// Text and acceptance time of a held message to deliver now.
    deliver: Option<(String, u64)>,
    /// Retract from the room, with this reason.
    retract: Option<&'static str>,
    hold_outcome: Option<&'static str>,
    lag: Option<Duration>,
}

/// The gateway's shared state.
pub struct Hub {
    config: Config,
    policies: PolicyCache,
    rooms: RwLock<HashMap<String, Vec<Arc<Peer>>>>,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    tracker: Mutex<Tracker>,
    /// Ids of verdicts applied for messages the tracker does not know, so a second copy is
    /// recognised as a duplicate. Kept apart from the tracker: a flood of such verdicts
    /// (forged ones included) only pushes out older entries of its own kind.
    unknown: Mutex<crate::tracker::RecentIds>,
    outbox: mpsc::Sender<ModerationRequest>,
    outbox_depth: AtomicI64,
    next_peer: AtomicU64,
    next_message: AtomicU64,
    boot_ms: u64,
    classify: std::sync::OnceLock<async_nats::Client>,
}

impl Hub {
    /// A hub handing moderation requests to `outbox`.
    pub fn new(mut config: Config, outbox: mpsc::Sender<ModerationRequest>) -> Arc<Self> {
        if config.instance.is_empty() {
            config.instance = crate::config::default_instance();
        }
        let tracker = Tracker::new(
            config.max_tracked,
            Duration::from_millis(config.track_for_ms),
        );
        Arc::new(Self {
            config,
            policies: PolicyCache::default(),
            rooms: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            tracker: Mutex::new(tracker),
            unknown: Mutex::new(crate::tracker::RecentIds::default()),
            outbox,
            outbox_depth: AtomicI64::new(0),
            next_peer: AtomicU64::new(1),
            next_message: AtomicU64::new(1),
            boot_ms: now_ms(),
            classify: std::sync::OnceLock::new(),
        })
    }

    /// The NATS client for `--moderation inline` calls.
    pub fn set_classify_client(&self, client: async_nats::Client) {
        let _ = self.classify.set(client);
    }

    /// The client for inline calls, when the gateway runs `--moderation inline`.
    pub(crate) fn classify_client(&self) -> Option<&async_nats::Client> {
        (self.config.moderation == Moderation::Inline)
            .then(|| self.classify.get())
            .flatten()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Registers a connection for `user`, or `None` at the connection limit.
    pub fn register(&self, user: Arc<str>) -> Option<(Arc<Peer>, PeerReceiver)> {
        let mut peers = lock(&self.peers);
        if peers.len() >= self.config.max_connections {
            metrics::counter!(m::DISCONNECTS, "reason" => Close::FULL.reason).increment(1);
            return None;
        }
        let id = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let (peer, rx) = Peer::new(id, user, self.config.send_queue);
        peers.insert(id, Arc::clone(&peer));
        metrics::gauge!(m::CONNECTIONS).set(peers.len() as f64);
        Some((peer, rx))
    }

    /// Removes a closed connection from its rooms and the registry.
    pub fn unregister(&self, peer: &Peer, rooms: impl IntoIterator<Item = String>) {
        for room in rooms {
            self.leave(peer, &room);
        }
        let mut peers = lock(&self.peers);
        peers.remove(&peer.id);
        metrics::gauge!(m::CONNECTIONS).set(peers.len() as f64);
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        lock(&self.peers).len()
    }

    /// Adds `peer` to `room`.
    pub fn join(&self, peer: &Arc<Peer>, room: &str) {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let members = rooms.entry(room.to_string()).or_default();
        if !members.iter().any(|p| p.id == peer.id) {
            members.push(Arc::clone(peer));
        }
    }

    /// Removes `peer` from `room` (the room disappears with its last member).
    pub fn leave(&self, peer: &Peer, room: &str) {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = rooms.get_mut(room) {
            members.retain(|p| p.id != peer.id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Queues `frame` to every member of `room`; returns how many got it.
    pub(crate) fn fan_out(&self, room: &str, frame: &Utf8Bytes) -> usize {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms.get(room).map_or(0, |members| {
            members.iter().filter(|peer| peer.push(frame)).count()
        })
    }

    /// Queues `frame` to the sender of a message: its own connection while open, else every
    /// connection of the same user in the room.
    fn to_sender(&self, peer: &std::sync::Weak<Peer>, room: &str, sender: &str, frame: &Utf8Bytes) {
        if let Some(peer) = peer.upgrade().filter(|p| !p.is_closed()) {
            peer.push(frame);
            return;
        }
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        for peer in rooms.get(room).into_iter().flatten() {
            if *peer.user == *sender {
                peer.push(frame);
            }
        }
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

    /// The policy of `room`.
    pub(crate) fn policy(&self, room: &str) -> RoomPolicy {
        self.policies.get(&self.config, room)
    }

    /// Accepts a validated `send` from `peer` (a member of `room`): assigns the id, acks,
    /// fans out (unless the room holds messages) and hands the request to the outbox.
    /// Never waits.
    pub fn accept(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        room: &str,
        text: String,
        client_msg_id: Option<String>,
        received: Instant,
    ) {
        let mut policy = self.policy(room);
        let off = self.config.moderation == Moderation::Off;
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
        self.enqueue(request);
        if policy.hold {
            let hub = Arc::clone(self);
            let deadline = self.config.hold_deadline();
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                hub.hold_deadline(&id);
            });
        }
    }

    fn enqueue(&self, request: ModerationRequest) {
        let id = request.id.clone();
        let reason = match self.outbox.try_send(request) {
            Ok(()) => {
                let depth = self.outbox_depth.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::gauge!(m::OUTBOX_DEPTH).set(depth as f64);
                return;
            }
            Err(mpsc::error::TrySendError::Full(_)) => "full",
            Err(mpsc::error::TrySendError::Closed(_)) => "shutdown",
        };
        metrics::counter!(m::OUTBOX_SHED, "reason" => reason).increment(1);
        let reason = format!("outbox_{reason}");
        self.settle(
            &id,
            None,
            Settle {
                action: Action::Unmoderated,
                scores: BTreeMap::new(),
                reason: Some(&reason),
                final_: true,
            },
        );
    }

    /// The outbox has stored (or finally shed) `n` requests.
    pub fn outbox_settled(&self, n: usize) {
        let depth = self.outbox_depth.fetch_sub(n as i64, Ordering::Relaxed) - n as i64;
        metrics::gauge!(m::OUTBOX_DEPTH).set(depth as f64);
    }

    /// Requests not yet stored in JetStream.
    pub fn outbox_depth(&self) -> i64 {
        self.outbox_depth.load(Ordering::Relaxed)
    }

    /// Applies a verdict from the moderator. Applying the same verdict twice changes
    /// nothing.
    pub fn apply_verdict(&self, verdict: Verdict) {
        let reason = verdict.reason.clone();
        self.settle(
            &verdict.id,
            Some(&verdict),
            Settle {
                action: verdict.action,
                scores: verdict.scores.clone(),
                reason: reason.as_deref(),
                final_: true,
            },
        );
    }

    /// The hold deadline of `id` passed: if it is still held, the room's failure policy
    /// decides.
    pub fn hold_deadline(&self, id: &str) {
        let held = matches!(
            lock(&self.tracker).get_mut(id).map(|t| &t.state),
            Some(State::Held { .. })
        );
        if held {
            self.settle(
                id,
                None,
                Settle {
                    action: Action::Unmoderated,
                    scores: BTreeMap::new(),
                    reason: Some("hold_deadline"),
                    final_: false,
                },
            );
        }
    }

    /// Settles message `id`. `verdict` gives room and sender when the message is unknown
    /// (forgotten, or accepted before this process restarted). The tracker lock covers the
    /// state change only; frames are encoded and queued after it is released (accepting
    /// sends takes the same lock).
    fn settle(&self, id: &str, verdict: Option<&Verdict>, settle: Settle<'_>) {
        let Some(effects) = self.transition(id, verdict, &settle) else {
            return;
        };
        if let Some(lag) = effects.lag {
            metrics::histogram!(m::VERDICT_LAG_SECONDS).record(lag.as_secs_f64());
        }
        if let Some(outcome) = effects.hold_outcome {
            metrics::counter!(m::HOLD_SETTLED, "outcome" => outcome).increment(1);
        }
        let to_sender = ServerFrame::Verdict {
            id: id.to_string(),
            room: effects.room.clone(),
            action: settle.action.as_str().to_string(),
            scores: settle.scores,
            reason: settle.reason.map(str::to_string),
        }
        .encode();
        self.to_sender(
            &effects.sender_peer,
            &effects.room,
            &effects.sender,
            &to_sender,
        );
        if let Some((text, sent_at_ms)) = effects.deliver {
            let frame = crate::frames::encode_message(
                id,
                &effects.room,
                &effects.sender,
                &text,
                sent_at_ms,
            );
            self.fan_out(&effects.room, &frame);
        }
        if let Some(reason) = effects.retract {
            if reason == UNMODERATED_RETRACT {
                metrics::counter!(m::FAIL_CLOSED_RETRACTS).increment(1);
            }
            let frame = ServerFrame::Retract {
                id: id.to_string(),
                room: effects.room.clone(),
                reason: reason.to_string(),
            };
            self.fan_out(&effects.room, &frame.encode());
        }
    }

    /// The state change of [`Hub::settle`], under the tracker lock; `None` when there is
    /// nothing to do (a duplicate, or a local decision about a forgotten message).
    fn transition(
        &self,
        id: &str,
        verdict: Option<&Verdict>,
        settle: &Settle<'_>,
    ) -> Option<Effects> {
        let now = Instant::now();
        let mut tracker = lock(&self.tracker);
        let Some(tracked) = tracker.get_mut(id) else {
            // Unknown here. Rooms live in one gateway: only a message this gateway
            // accepted (its id carries this instance's name) can be on its clients'
            // screens, forgotten by the tracker's bounds or accepted before a restart with
            // the same `--instance`. Such a verdict is applied from its own fields: a block
            // is retracted from whoever is in the room now. Another gateway's (or a
            // forged) id is ignored: forwarding it would only let a verdict flood fill
            // every member's send queue. Never remembered in the tracker: a flood must not
            // push real messages out of it.
            drop(tracker);
            let verdict = verdict?;
            let mine = id
                .strip_prefix(self.config.instance.as_str())
                .is_some_and(|rest| rest.starts_with('.'));
            if !mine {
                metrics::counter!(m::VERDICTS_IGNORED, "reason" => "not_ours").increment(1);
                return None;
            }
            if !lock(&self.unknown).insert(id) {
                metrics::counter!(m::VERDICTS_IGNORED, "reason" => "duplicate").increment(1);
                return None;
            }
            return Some(self.unknown_effects(verdict, settle));
        };
        if tracked.settled {
            metrics::counter!(m::VERDICTS_IGNORED, "reason" => "duplicate").increment(1);
            return None;
        }
        let withdraw = withdrawal(settle.action, tracked.policy.failure);
        let deliver = withdraw.is_none();
        let mut effects = Effects {
            room: tracked.room.clone(),
            sender: Arc::clone(&tracked.sender),
            sender_peer: tracked.sender_peer.clone(),
            deliver: None,
            retract: None,
            hold_outcome: None,
            lag: None,
        };
        if let State::Held { .. } = tracked.state {
            let State::Held { text } = std::mem::replace(&mut tracked.state, State::Withdrawn)
            else {
                unreachable!("matched above")
            };
            metrics::gauge!(m::HELD).decrement(1.0);
            effects.hold_outcome = Some(match (settle.action, deliver, settle.reason) {
                (Action::Allow, _, _) => "allowed",
                (Action::Flag, _, _) => "flagged",
                (Action::Block, _, _) => "blocked",
                (_, true, Some("hold_deadline")) => "deadline_delivered",
                (_, false, Some("hold_deadline")) => "deadline_dropped",
                (_, true, _) => "unmoderated_delivered",
                (_, false, _) => "unmoderated_dropped",
            });
            if deliver {
                tracked.state = State::Delivered;
                effects.deliver = Some((text, tracked.sent_at_ms));
            }
        } else if withdraw.is_some() && tracked.state == State::Delivered {
            tracked.state = State::Withdrawn;
            effects.retract = withdraw;
        }
        if settle.final_ {
            tracked.settled = true;
            if verdict.is_some() {
                metrics::counter!(m::VERDICTS, "action" => settle.action.as_str()).increment(1);
                if tracked.sent_at_ms > 0 {
                    effects.lag = Some(now.duration_since(tracked.accepted));
                }
            }
        }
        Some(effects)
    }

    /// What a verdict for a message this gateway does not track does.
    fn unknown_effects(&self, verdict: &Verdict, settle: &Settle<'_>) -> Effects {
        let policy = self.policies.get(&self.config, &verdict.room);
        let retract = withdrawal(settle.action, policy.failure);
        metrics::counter!(m::VERDICTS, "action" => settle.action.as_str()).increment(1);
        Effects {
            room: verdict.room.clone(),
            sender: verdict.sender.as_str().into(),
            sender_peer: std::sync::Weak::new(),
            deliver: None,
            retract,
            hold_outcome: None,
            lag: None,
        }
    }

    /// Messages held in `hold` rooms right now.
    pub fn held(&self) -> usize {
        lock(&self.tracker).held()
    }

    /// Closes every connection with "going away".
    pub fn close_all(&self) {
        let peers: Vec<Arc<Peer>> = lock(&self.peers).values().cloned().collect();
        for peer in peers {
            peer.close_with(Close::SHUTDOWN);
        }
    }
}

/// Why an unmoderated message leaves a fail-closed room.
const UNMODERATED_RETRACT: &str = "unmoderated";

/// The retract reason when a delivered message with this verdict must go (held, it is
/// never shown): a block, or no verdict in a fail-closed room. `None`: it stays (or, held,
/// is delivered).
fn withdrawal(action: Action, failure: Failure) -> Option<&'static str> {
    match (action, failure) {
        (Action::Block, _) => Some("blocked"),
        (Action::Unmoderated, Failure::Closed) => Some(UNMODERATED_RETRACT),
        (Action::Allow | Action::Flag | Action::Unmoderated, _) => None,
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
#[path = "hub_tests.rs"]
mod tests;
