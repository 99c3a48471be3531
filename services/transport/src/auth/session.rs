//! What an identity means for a connection once it is open: the rooms it may join (every
//! room, or the names and prefixes of its token's `rooms` claim), and its end at the
//! token's expiry.

use std::sync::Arc;
use std::time::SystemTime;

use crate::frames::Close;
use crate::frames::{ErrorCode, FrameError};
use crate::peer::Peer;

/// The close of a connection whose token expired (1008, policy violation): the client
/// gets a fresh token and connects again.
pub(crate) const TOKEN_EXPIRED: Close = Close {
    code: 1008,
    reason: "token_expired",
};

/// Rooms a connection may join. A pattern is a room name, or a prefix ending in `*`
/// (`kids-*`; `*` alone is every room), as in `--room-policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomGrant(Option<Arc<[String]>>);

impl RoomGrant {
    /// Every room (the token has no `rooms` claim, or the development identity).
    pub fn any() -> Self {
        Self(None)
    }

    /// Only the rooms matching one of `patterns` (none when it is empty). Each pattern must
    /// be a room name, optionally ending in `*`.
    pub fn only(patterns: Vec<String>) -> Result<Self, String> {
        for pattern in &patterns {
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            if !(stem.is_empty() || offpath_protocol::subject::is_valid_token(stem)) {
                return Err(format!(
                    "rooms claim: {pattern:?} is not a room name or prefix"
                ));
            }
        }
        Ok(Self(Some(patterns.into())))
    }

    /// Whether `room` may be joined.
    pub fn allows(&self, room: &str) -> bool {
        let Some(patterns) = &self.0 else {
            return true;
        };
        patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => pattern == room,
            })
    }
}

/// The check a `join` frame passes before the hub sees it: a room outside the grant is
/// refused with `forbidden_room` (counted by the reader like every error frame).
pub(crate) fn check_join(grant: &RoomGrant, room: &str) -> Result<(), FrameError> {
    if grant.allows(room) {
        Ok(())
    } else {
        Err(FrameError::new(
            ErrorCode::ForbiddenRoom,
            format!("your token does not allow room {room:?}"),
        ))
    }
}

/// Closes `peer` with [`TOKEN_EXPIRED`] at `at` (at once if it is past). The timer ends with
/// the returned guard, which the connection holds while it is open.
pub(crate) fn close_at_expiry(peer: &Arc<Peer>, at: Option<SystemTime>) -> Option<ExpiryGuard> {
    let at = at?;
    let peer = Arc::downgrade(peer);
    let timer = tokio::spawn(async move {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(left).await;
        if let Some(peer) = peer.upgrade() {
            peer.close_with(TOKEN_EXPIRED);
        }
    });
    Some(ExpiryGuard(timer))
}

/// Stops an expiry timer when dropped.
pub(crate) struct ExpiryGuard(tokio::task::JoinHandle<()>);

impl Drop for ExpiryGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
