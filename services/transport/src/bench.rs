//! What `benches/hub.rs` drives, built only with the `bench` feature: one room of a hub,
//! its members' queues and the outbox, without the network. Not an API.

use std::sync::Arc;
use std::time::Instant;

use offpath_protocol::ModerationRequest;
use tokio::sync::mpsc;

use crate::Config;
use crate::hub::{Admission, Hub};
use crate::peer::{Peer, PeerReceiver};

/// A decoupled hub with one room, `room`, and its members.
pub struct Room {
    hub: Arc<Hub>,
    sender: Arc<Peer>,
    /// Every member's queue (the sender's included), emptied by [`Room::drain`].
    receivers: Vec<PeerReceiver>,
    outbox: mpsc::Receiver<ModerationRequest>,
}

impl Room {
    /// A hub with `config` and `members` connections (at least one) in `room`.
    pub fn new(config: Config, members: usize) -> Self {
        // Room for every request a benchmark run sends between two drains.
        let (tx, outbox) = mpsc::channel(1 << 20);
        let hub = Hub::new(config, tx, Admission::Decoupled);
        let mut peers = Vec::new();
        let mut receivers = Vec::new();
        for m in 0..members.max(1) {
            let (peer, rx) = hub.register(Arc::from(format!("user{m}"))).expect("peer");
            hub.join(&peer, "room");
            peers.push(peer);
            receivers.push(rx);
        }
        Self {
            hub,
            sender: Arc::clone(&peers[0]),
            receivers,
            outbox,
        }
    }

    /// The first member sends `text`: accept → ack → fan-out to every member → outbox.
    pub fn send(&self, text: String) {
        self.hub
            .accept(&self.sender, "room", text, None, Instant::now());
    }

    /// Empties every member's queue and the outbox (a full queue would disconnect a
    /// member).
    pub fn drain(&mut self) {
        for rx in &mut self.receivers {
            while rx.frames.try_recv().is_ok() {}
        }
        while self.outbox.try_recv().is_ok() {}
    }
}
