//! The life of a message: accept → fan out → hand to the outbox; later the verdict (or a
//! hold deadline, or a shed) settles it. Nothing here awaits anything (but the inline
//! baseline's classify call): locks are held for microseconds and every push to a
//! connection is a `try_send`.
//!
//! Parts: [`admission`] (decoupled, inline or off, chosen at start), [`rooms`]
//! (connections and members), [`lifecycle`] (the message state machine, a pure function),
//! [`settle`] (applying it: the lock, then metrics and frames), [`tracker`] (what is
//! remembered of each message), [`deadlines`] (a single task for all hold deadlines) and the
//! outbox [`Handoff`] (`hub/handoff.rs`).

mod admission;
mod deadlines;
mod handoff;
mod ids;
mod lifecycle;
mod mentions;
mod recent;
mod report_quota;
mod reports;
mod rooms;
mod settle;
mod tracker;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use offpath_protocol::{ModerationRequest, PROTOCOL_VERSION, Priority};
use tokio::sync::mpsc;

use crate::config::{Config, Failure, PolicyCache, RoomPolicy};
use crate::frames::{ServerFrame, message_frame};
use crate::metrics as m;
use crate::peer::{Peer, PeerReceiver};
pub(crate) use admission::Admission;
use deadlines::Deadlines;
pub(crate) use handoff::Handoff;
pub(crate) use ids::new_id;
use lifecycle::{Event, State, Tracked};
use recent::Recent;
pub(crate) use recent::Shown;
pub(crate) use reports::ReportFrame;
use rooms::Rooms;
use tracker::{RecentIds, Tracker};

/// Milliseconds since the Unix epoch: the contract's clock.
pub(crate) use offpath_protocol::now_ms;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Each room's latest messages: what members can report, and review context.
    recent: Mutex<Recent>,
    /// Reports per reporter and per gateway.
    report_quota: Mutex<report_quota::ReportQuota>,
    deadlines: Arc<Deadlines>,
    outbox: Handoff,
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
        let tracker = Tracker::new(config.messages.max_tracked, config.messages.track_for.get());
        Arc::new(Self {
            rooms: Rooms::new(config.limits.max_connections, config.limits.send_queue),
            recent: Mutex::new(Recent::new(config.messages.report_window)),
            report_quota: Mutex::new(report_quota::ReportQuota::new(
                report_quota::Limits {
                    per_reporter_per_minute: config.messages.reports_per_minute,
                    reporter_burst: config.messages.report_burst,
                    per_gateway_per_minute: config.messages.gateway_reports_per_minute,
                    gateway_burst: config.messages.gateway_report_burst,
                },
                std::time::Instant::now(),
            )),
            config,
            admission,
            policies: PolicyCache::default(),
            tracker: Mutex::new(tracker),
            unknown: Mutex::new(RecentIds::default()),
            deadlines: Arc::default(),
            outbox: Handoff::new(outbox),
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
        let emptied = self.rooms.unregister(peer, rooms);
        let mut recent = lock(&self.recent);
        for room in emptied {
            recent.forget(&room);
        }
    }

    /// Open connections.
    pub(crate) fn connections(&self) -> usize {
        self.rooms.connections()
    }

    /// Adds `peer` to `room`.
    pub(crate) fn join(&self, peer: &Arc<Peer>, room: &str) {
        self.rooms.join(peer, room);
    }

    /// The answer to a `join` of `room`: its policy, the text limit and, `with_history`, its
    /// history (the latest messages still shown, [`crate::frames::HISTORY_MESSAGES`] and
    /// [`crate::frames::HISTORY_BYTES`] of text at most).
    pub(crate) fn joined(&self, room: String, with_history: bool) -> ServerFrame {
        let policy = self.policy(&room);
        let mode = match (policy.e2e, policy.hold) {
            (true, _) => "e2e",
            (false, true) => "hold",
            (false, false) => "post",
        };
        let failure = match policy.failure {
            Failure::Open => "fail_open",
            Failure::Closed => "fail_closed",
        };
        let history = if with_history {
            let (n, bytes) = (
                crate::frames::HISTORY_MESSAGES,
                crate::frames::HISTORY_BYTES,
            );
            lock(&self.recent).history(&room, n, bytes)
        } else {
            Vec::new()
        };
        ServerFrame::Joined {
            room,
            policy: mode.to_string(),
            failure: failure.to_string(),
            max_text_bytes: self.config.messages.max_text_bytes,
            history,
        }
    }

    /// Removes `peer` from `room`.
    pub(crate) fn leave(&self, peer: &Peer, room: &str) {
        if self.rooms.leave(peer, room) {
            lock(&self.recent).forget(room);
        }
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
        let (id, sent_at_ms) = self.ack(peer, room, client_msg_id, policy.hold);
        // A deadline only where a late answer is of no use: a fail-closed hold room drops
        // the message at its hold deadline. Everything else stays (or becomes) visible and
        // must be classified however late, so a block can still retract it.
        let deadline_ms = (policy.hold && policy.failure == Failure::Closed)
            .then(|| sent_at_ms + self.config.moderation.hold_deadline.ms());
        let mentions = mentions::mentions(&text);
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
            policy: self.config.moderation_policy_of(room).map(String::from),
            report: None,
            context: Vec::new(),
            mentions,
            account_created_ms: peer.account_created_ms().map(|c| c.min(sent_at_ms)),
        }
    }

    /// Assigns a new message its id and time and acks it to the sender.
    fn ack(
        &self,
        peer: &Peer,
        room: &str,
        client_msg_id: Option<String>,
        held: bool,
    ) -> (String, u64) {
        let id = new_id(&self.config.instance);
        let sent_at_ms = now_ms();
        metrics::counter!(m::MESSAGES).increment(1);
        let ack = ServerFrame::Ack {
            client_msg_id,
            id: id.clone(),
            room: room.to_string(),
            held,
        };
        peer.push(&ack.encode());
        (id, sent_at_ms)
    }

    /// `room` showed `message` as its sender (a member here: the room has members) sent it:
    /// members may report it, and it is context for the messages after it.
    pub(crate) fn shown(&self, room: &str, message: Shown) {
        keep(&mut lock(&self.recent), room, message);
    }

    /// `room` showed `message` later than it was sent (a held message released): kept only
    /// while the room has members here, since nothing forgets the messages of a room nobody
    /// is in any more.
    pub(crate) fn released(&self, room: &str, message: Shown) {
        if self.rooms.has_members(room) {
            self.shown(room, message);
        }
    }

    /// Gives `request` the room's latest messages as context and, when its message is
    /// shown now, keeps it among them (one lock on the send path).
    fn remember(&self, request: &mut ModerationRequest, sender: &Arc<str>, shown: bool) {
        let n = self.config.messages.review_context;
        let mut recent = lock(&self.recent);
        request.context = recent.context(&request.room, None, n);
        if shown {
            let message = Shown::new(&request.id, sender, &request.text, request.sent_at_ms);
            keep(&mut recent, &request.room, message);
        }
    }

    /// Accepts a `send` to an end-to-end-encrypted room: the text is ciphertext, relayed
    /// to the members as it is and never sent for moderation (only a member's report of it
    /// is, with the plaintext the reporter submits).
    pub(crate) fn accept_e2e(
        &self,
        peer: &Arc<Peer>,
        room: &str,
        text: String,
        client_msg_id: Option<String>,
        commitment: Option<String>,
        received: Instant,
    ) {
        let (id, sent_at_ms) = self.ack(peer, room, client_msg_id, false);
        let frame = crate::frames::encode_message(
            &id,
            room,
            &peer.user,
            &text,
            sent_at_ms,
            commitment.as_deref(),
        );
        self.fan_out(room, &frame);
        metrics::histogram!(m::FANOUT_SECONDS).record(received.elapsed().as_secs_f64());
        metrics::counter!(m::E2E_MESSAGES).increment(1);
        let mut message = Shown::new(&id, &peer.user, &text, sent_at_ms);
        message.commitment = commitment.map(String::into_boxed_str);
        self.shown(room, message);
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
        let mut request = self.new_request(peer, room, text, client_msg_id, policy);
        if !policy.hold {
            self.fan_out(room, &message_frame(&request));
            metrics::histogram!(m::FANOUT_SECONDS).record(received.elapsed().as_secs_f64());
        }
        if off {
            return;
        }
        self.remember(&mut request, &peer.user, !policy.hold);
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
            reviewed_at_ms: 0,
            text_sha256: offpath_protocol::text_sha256(&request.text).into(),
        };
        let id = request.id.clone();
        lock(&self.tracker).insert(id.clone(), tracked, received);
        if policy.hold {
            let at = tokio::time::Instant::now() + self.config.moderation.hold_deadline.get();
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

    /// Messages held in `hold` rooms right now.
    pub(crate) fn held(&self) -> usize {
        lock(&self.tracker).held()
    }
}

/// Keeps `message` among `room`'s latest, or counts why it was not (the gateway's budget
/// or its sender's share of it is spent).
fn keep(recent: &mut Recent, room: &str, message: Shown) {
    if let Err(why) = recent.shown(room, message) {
        metrics::counter!(m::REPORT_WINDOW_FULL, "reason" => why.as_str()).increment(1);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod binding_tests;
