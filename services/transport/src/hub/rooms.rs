//! Who is connected and who is in which room. Pushing to a member is a `try_send`
//! ([`Peer::push`]); nothing here waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;

use super::lock;
use crate::frames::Close;
use crate::metrics as m;
use crate::peer::{Peer, PeerReceiver};

/// The connection registry and the rooms' members.
#[derive(Debug)]
pub(crate) struct Rooms {
    rooms: RwLock<HashMap<String, Vec<Arc<Peer>>>>,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    next_peer: AtomicU64,
    /// Open connections accepted at most.
    max_connections: usize,
    /// Frames queued per connection at most.
    send_queue: usize,
}

impl Rooms {
    /// No connections yet; at most `max_connections`, each with a queue of `send_queue`.
    pub(crate) fn new(max_connections: usize, send_queue: usize) -> Self {
        Self {
            rooms: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            next_peer: AtomicU64::new(1),
            max_connections,
            send_queue,
        }
    }

    /// Registers a connection for `user`, or `None` at the connection limit.
    pub(crate) fn register(&self, user: Arc<str>) -> Option<(Arc<Peer>, PeerReceiver)> {
        let mut peers = lock(&self.peers);
        if peers.len() >= self.max_connections {
            metrics::counter!(m::DISCONNECTS, "reason" => Close::FULL.reason).increment(1);
            return None;
        }
        let id = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let (peer, rx) = Peer::new(id, user, self.send_queue);
        peers.insert(id, Arc::clone(&peer));
        metrics::gauge!(m::CONNECTIONS).set(peers.len() as f64);
        Some((peer, rx))
    }

    /// Removes a closed connection from its rooms and the registry; returns the rooms it
    /// was the last member of.
    pub(crate) fn unregister(
        &self,
        peer: &Peer,
        rooms: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        let emptied = rooms
            .into_iter()
            .filter(|room| self.leave(peer, room))
            .collect();
        let mut peers = lock(&self.peers);
        peers.remove(&peer.id);
        metrics::gauge!(m::CONNECTIONS).set(peers.len() as f64);
        emptied
    }

    /// Open connections.
    pub(crate) fn connections(&self) -> usize {
        lock(&self.peers).len()
    }

    /// Adds `peer` to `room`.
    pub(crate) fn join(&self, peer: &Arc<Peer>, room: &str) {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let members = rooms.entry(room.to_string()).or_default();
        if !members.iter().any(|p| p.id == peer.id) {
            members.push(Arc::clone(peer));
        }
    }

    /// Removes `peer` from `room` (the room disappears with its last member); true when
    /// it was the last.
    pub(crate) fn leave(&self, peer: &Peer, room: &str) -> bool {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let Some(members) = rooms.get_mut(room) else {
            return false;
        };
        members.retain(|p| p.id != peer.id);
        let emptied = members.is_empty();
        if emptied {
            rooms.remove(room);
        }
        emptied
    }

    /// Whether `room` has a member here.
    pub(crate) fn has_members(&self, room: &str) -> bool {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms.contains_key(room)
    }

    /// Queues `frame` to every member of `room`; returns how many got it.
    pub(crate) fn fan_out(&self, room: &str, frame: &Utf8Bytes) -> usize {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms.get(room).map_or(0, |members| {
            members.iter().filter(|peer| peer.push(frame)).count()
        })
    }

    /// Closes every connection with "going away".
    pub(crate) fn close_all(&self) {
        let peers: Vec<Arc<Peer>> = lock(&self.peers).values().cloned().collect();
        for peer in peers {
            peer.close_with(Close::SHUTDOWN);
        }
    }
}
