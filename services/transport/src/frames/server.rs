//! Frames from the gateway to a client.

use std::collections::BTreeMap;

use axum::extract::ws::Utf8Bytes;
use offpath_protocol::ModerationRequest;
use serde::{Deserialize, Serialize};

use super::FrameError;

/// A frame to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerFrame {
    /// The gateway accepted a `send` and assigned it `id`.
    Ack {
        /// The client's id, when it gave one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_msg_id: Option<String>,
        /// The message id (the moderation request's id).
        id: String,
        /// The room.
        room: String,
        /// Whether the room holds messages until they are allowed.
        held: bool,
    },
    /// The connection is now a member of `room` (the answer to `join`), with what a page
    /// needs to know about the room (fields added in issue 27; older clients ignore them).
    Joined {
        /// The room.
        room: String,
        /// When members see a message: `post` (at once; moderation may retract it later),
        /// `hold` (pre-moderated: only once allowed) or `e2e` (never moderated).
        #[serde(default)]
        policy: String,
        /// What becomes of a message moderation could not judge: `fail_open` (it stays, or
        /// is delivered) or `fail_closed` (it is retracted, or never delivered).
        #[serde(default)]
        failure: String,
        /// The longest `text` a `send` may carry, in UTF-8 bytes (`--max-text-bytes`).
        #[serde(default)]
        max_text_bytes: usize,
        /// The room's latest messages still shown (delivered and not retracted) that this
        /// gateway keeps, oldest first, at most [`HISTORY_MESSAGES`]: a late joiner's
        /// history.
        #[serde(default)]
        history: Vec<HistoryMessage>,
    },
    /// The connection is no longer a member of `room` (the answer to `leave`).
    Left {
        /// The room.
        room: String,
    },
    /// A message in a room (to every member, the sender included).
    Message {
        /// Message id.
        id: String,
        /// Room.
        room: String,
        /// Who sent it.
        sender: String,
        /// Text.
        text: String,
        /// When the gateway accepted it, ms since the Unix epoch.
        sent_at_ms: u64,
        /// End-to-end-encrypted rooms: the sender's franking commitment, when it sent one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        commitment: Option<String>,
    },
    /// The moderation outcome of the sender's own message.
    Verdict {
        /// Message id.
        id: String,
        /// Room.
        room: String,
        /// `allow`, `flag`, `block` or `unmoderated`.
        action: String,
        /// Label → probability.
        scores: BTreeMap<String, f32>,
        /// Why, when unmoderated.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
        /// The category that decided a `flag` or `block` (the verdict's `category`, e.g.
        /// `harassment`), when the moderator named one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        category: Option<String>,
        /// Where in the message the category scored highest (the verdict's `span`: bytes
        /// of the text's UTF-8 encoding and the part's score), when the moderator could
        /// tell a part from the whole.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        span: Option<offpath_protocol::Span>,
    },
    /// A message is withdrawn from the room.
    Retract {
        /// Message id.
        id: String,
        /// Room.
        room: String,
        /// `blocked`, or `unmoderated` when a fail-closed room could not get a verdict.
        reason: String,
    },
    /// The gateway queued a member's `report` of message `id` for the reviewers (sent again
    /// for a repeated report, which queues nothing new).
    Reported {
        /// The reported message's id.
        id: String,
        /// Room.
        room: String,
    },
    /// A refused frame; the connection stays open unless the code says otherwise.
    Error {
        /// Stable code.
        code: String,
        /// For a person.
        message: String,
    },
}

/// Most messages of a room's history a `joined` frame carries (the gateway keeps at most
/// `--report-window` of them per room anyway): 50 chat lines fill a page's log.
pub(crate) const HISTORY_MESSAGES: usize = 50;
/// Most bytes of text a `joined` frame's history carries (the latest messages that fit): a
/// frame is queued whole for its connection, and a client that joins rooms without reading
/// must not hold more of the gateway's memory in history than in ordinary messages (its
/// send queue of 256 frames of 8 KiB at most). With [`HISTORY_JOINS`] a connection's
/// history frames hold 32 × 16 KiB = 512 KiB of text at most, twice that escaped.
pub(crate) const HISTORY_BYTES: usize = 16 * 1024;
/// How many `join`s of one connection get a history: one per room a connection may be in
/// (`--max-rooms-per-connection`'s default). Later joins (a client leaving and joining
/// again and again) get `joined` without it.
pub(crate) const HISTORY_JOINS: usize = 32;

/// One message of a `joined` frame's history: as its `message` frame had it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HistoryMessage {
    /// Message id.
    pub(crate) id: String,
    /// Who sent it.
    pub(crate) sender: String,
    /// Text (ciphertext in an e2e room).
    pub(crate) text: String,
    /// When the gateway accepted it, ms since the Unix epoch.
    pub(crate) sent_at_ms: u64,
    /// End-to-end-encrypted rooms: the sender's franking commitment, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) commitment: Option<String>,
}

impl ServerFrame {
    /// Serialized once; the result is cloned cheaply for every recipient.
    pub(crate) fn encode(&self) -> Utf8Bytes {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default().into()
    }

    /// The error frame for `error`.
    pub(crate) fn error(error: &FrameError) -> Self {
        ServerFrame::Error {
            code: error.code.as_str().to_string(),
            message: error.message.clone(),
        }
    }
}

/// The same bytes as `ServerFrame::Message { .. }.encode()`, serialized from borrowed
/// fields.
pub(crate) fn encode_message(
    id: &str,
    room: &str,
    sender: &str,
    text: &str,
    sent_at_ms: u64,
    commitment: Option<&str>,
) -> Utf8Bytes {
    #[derive(Serialize)]
    #[serde(tag = "type", rename = "message")]
    struct MessageRef<'a> {
        id: &'a str,
        room: &'a str,
        sender: &'a str,
        text: &'a str,
        sent_at_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        commitment: Option<&'a str>,
    }
    let frame = MessageRef {
        id,
        room,
        sender,
        text,
        sent_at_ms,
        commitment,
    };
    serde_json::to_string(&frame).unwrap_or_default().into()
}

/// The `message` frame of a request, encoded from borrowed fields (this is the send path:
/// no copy of the text just to serialize it).
pub(crate) fn message_frame(request: &ModerationRequest) -> Utf8Bytes {
    encode_message(
        &request.id,
        &request.room,
        &request.sender,
        &request.text,
        request.sent_at_ms,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed `message` encoding is byte for byte the enum's.
    #[test]
    fn borrowed_message_matches_the_enum() {
        let owned = ServerFrame::Message {
            id: "i".into(),
            room: "r".into(),
            sender: "s".into(),
            text: "t \"q\"".into(),
            sent_at_ms: 7,
            commitment: None,
        };
        assert_eq!(
            encode_message("i", "r", "s", "t \"q\"", 7, None),
            owned.encode()
        );
    }

    /// Server frames carry their `type` tag and round-trip.
    #[test]
    fn server_frames_are_tagged() {
        let frame = ServerFrame::Retract {
            id: "i".into(),
            room: "r".into(),
            reason: "blocked".into(),
        };
        let text = frame.encode();
        assert_eq!(
            text.as_str(),
            r#"{"type":"retract","id":"i","room":"r","reason":"blocked"}"#
        );
        assert_eq!(serde_json::from_str::<ServerFrame>(&text).unwrap(), frame);
    }
}
