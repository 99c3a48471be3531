//! Room policies: when a room's members see a message (`post` or `hold`; `e2e` for
//! end-to-end-encrypted rooms, whose messages are never moderated, only reported) and what
//! an unmoderated one becomes (`fail_open` or `fail_closed`), parsed from
//! `room=mode:failure` rules, and looked up per message through a cache.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::Config;

/// When a room's members see a message, and what happens when moderation cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    /// `post`: deliver at once, retract if blocked; `hold`: deliver only after `allow`.
    pub hold: bool,
    /// `e2e`: the texts are ciphertext the server cannot read. Delivered at once and never
    /// sent for moderation; a member's `report` carries the plaintext (`docs/transport.md`,
    /// "Reports"). Never with `hold`.
    pub e2e: bool,
    /// What an unmoderated message becomes (shed, NATS down, moderator late or unsure).
    pub failure: Failure,
}

/// What an unmoderated message becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It stays delivered (or, when held, is delivered).
    Open,
    /// It is retracted (or, when held, never delivered).
    Closed,
}

impl fmt::Display for RoomPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match (self.e2e, self.hold) {
            (true, _) => "e2e",
            (false, true) => "hold",
            (false, false) => "post",
        };
        let failure = match self.failure {
            Failure::Open => "fail_open",
            Failure::Closed => "fail_closed",
        };
        write!(f, "{mode}:{failure}")
    }
}

impl FromStr for RoomPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mode, failure) = s.split_once(':').unwrap_or((s, "fail_open"));
        let (hold, e2e) = match mode {
            "post" => (false, false),
            "hold" => (true, false),
            "e2e" => (false, true),
            other => return Err(format!("room mode {other:?}: expected post, hold or e2e")),
        };
        let failure = match failure {
            "fail_open" => Failure::Open,
            "fail_closed" => Failure::Closed,
            other => {
                return Err(format!(
                    "room failure policy {other:?}: expected fail_open or fail_closed"
                ));
            }
        };
        Ok(Self { hold, e2e, failure })
    }
}

/// `room=mode:failure` (a room name ending in `*` matches a prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRule {
    /// Room name or `prefix*`.
    pub room: String,
    /// Its policy.
    pub policy: RoomPolicy,
}

impl FromStr for RoomRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (room, policy) = s
            .split_once('=')
            .ok_or_else(|| format!("room policy {s:?}: expected room=mode:failure"))?;
        if room.is_empty() {
            return Err(format!("room policy {s:?}: empty room name"));
        }
        Ok(Self {
            room: room.to_string(),
            policy: policy.parse()?,
        })
    }
}

/// `room=policy`: the moderation policy (a name in the moderators' policy file) a room's
/// requests name (a room name ending in `*` matches a prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationRule {
    /// Room name or `prefix*`.
    pub room: String,
    /// The policy name sent in the request's `policy` field.
    pub policy: String,
}

impl FromStr for ModerationRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (room, policy) = s
            .split_once('=')
            .ok_or_else(|| format!("moderation policy {s:?}: expected room=policy"))?;
        if room.is_empty() {
            return Err(format!("moderation policy {s:?}: empty room name"));
        }
        if !offpath_protocol::subject::is_valid_token(policy) {
            return Err(format!(
                "moderation policy {s:?}: a policy name is 1-64 characters of A-Z a-z 0-9 _ : @ = + ~ -"
            ));
        }
        Ok(Self {
            room: room.to_string(),
            policy: policy.to_string(),
        })
    }
}

/// Whether `rule_room` (a name, or `prefix*`) matches `room`.
pub(super) fn matches(rule_room: &str, room: &str) -> bool {
    match rule_room.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => rule_room == room,
    }
}

/// Policies looked up by room name, cached (rules are few, lookups are per message).
#[derive(Debug, Default)]
pub(crate) struct PolicyCache(std::sync::Mutex<HashMap<String, RoomPolicy>>);

impl PolicyCache {
    pub(crate) fn get(&self, config: &Config, room: &str) -> RoomPolicy {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(policy) = cache.get(room) {
            return *policy;
        }
        let policy = config.policy_of(room);
        // Bounded: room names come from clients; past the bound, look up without caching.
        if cache.len() < 10_000 {
            cache.insert(room.to_string(), policy);
        }
        policy
    }
}
