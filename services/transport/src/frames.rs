//! The websocket protocol between chat clients and the gateway: JSON text frames.
//!
//! Client → server: `join`, `leave`, `send`. Server → client: `joined`, `left`, `ack`,
//! `message`, `verdict`, `retract`, `error`. A bad frame gets an `error` frame with a stable `code`; the
//! connection survives it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest `client_msg_id` echoed back, in bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 128;

/// A frame from a client, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Join a room.
    Join {
        /// The room.
        room: String,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Send a message to a room the connection has joined.
    Send {
        /// The room.
        room: String,
        /// The text.
        text: String,
        /// The client's own id for the message, echoed in the `ack`.
        client_msg_id: Option<String>,
    },
}

/// Why a client frame was refused: the `code` of the error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, or not an object.
    InvalidJson,
    /// A binary websocket frame (the protocol is JSON text).
    BinaryFrame,
    /// No `type`, or not a string.
    MissingType,
    /// A `type` the gateway does not know.
    UnknownType,
    /// A field is missing, has the wrong type, or is not part of the frame.
    InvalidFrame,
    /// The room name is not 1–64 bytes of `A–Z a–z 0–9 _ : @ = + ~ -`.
    InvalidRoom,
    /// The text is longer than the gateway's limit.
    TextTooLarge,
    /// `client_msg_id` is longer than 128 bytes.
    InvalidClientMsgId,
    /// A send to a room the connection has not joined.
    NotAMember,
    /// A join past the per-connection room limit.
    TooManyRooms,
    /// Sending faster than the per-connection rate limit.
    RateLimited,
    /// The gateway is at its connection limit.
    TooManyConnections,
    /// The gateway is shutting down.
    ShuttingDown,
}

impl ErrorCode {
    /// Every code, for tests and metric pre-registration.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::InvalidJson,
        ErrorCode::BinaryFrame,
        ErrorCode::MissingType,
        ErrorCode::UnknownType,
        ErrorCode::InvalidFrame,
        ErrorCode::InvalidRoom,
        ErrorCode::TextTooLarge,
        ErrorCode::InvalidClientMsgId,
        ErrorCode::NotAMember,
        ErrorCode::TooManyRooms,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::ShuttingDown,
    ];

    /// The wire name, also the `code` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::BinaryFrame => "binary_frame",
            ErrorCode::MissingType => "missing_type",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::TextTooLarge => "text_too_large",
            ErrorCode::InvalidClientMsgId => "invalid_client_msg_id",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ShuttingDown => "shutting_down",
        }
    }
}

/// A refused frame: the code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl FrameError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomFrame {
    #[serde(rename = "type")]
    _kind: String,
    room: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendFrame {
    #[serde(rename = "type")]
    _kind: String,
    room: String,
    text: String,
    #[serde(default)]
    client_msg_id: Option<String>,
}

/// Parses and validates a text frame. `max_text_bytes` bounds `send` texts.
pub fn parse(frame: &str, max_text_bytes: usize) -> Result<ClientFrame, FrameError> {
    let value: serde_json::Value = serde_json::from_str(frame)
        .map_err(|e| FrameError::new(ErrorCode::InvalidJson, format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(FrameError::new(
            ErrorCode::InvalidJson,
            "a frame is a JSON object",
        ));
    }
    let kind = match value.get("type") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        _ => {
            return Err(FrameError::new(
                ErrorCode::MissingType,
                "a frame needs a string \"type\"",
            ));
        }
    };
    let invalid = |e: serde_json::Error| {
        FrameError::new(ErrorCode::InvalidFrame, format!("{kind} frame: {e}"))
    };
    let frame = match kind.as_str() {
        "join" | "leave" => {
            let RoomFrame { room, .. } = serde_json::from_value(value).map_err(invalid)?;
            if kind == "join" {
                ClientFrame::Join { room }
            } else {
                ClientFrame::Leave { room }
            }
        }
        "send" => {
            let SendFrame {
                room,
                text,
                client_msg_id,
                ..
            } = serde_json::from_value(value).map_err(invalid)?;
            if text.len() > max_text_bytes {
                return Err(FrameError::new(
                    ErrorCode::TextTooLarge,
                    format!(
                        "text is {} bytes; the limit is {max_text_bytes}",
                        text.len()
                    ),
                ));
            }
            if client_msg_id
                .as_ref()
                .is_some_and(|id| id.len() > MAX_CLIENT_MSG_ID_BYTES)
            {
                return Err(FrameError::new(
                    ErrorCode::InvalidClientMsgId,
                    format!("client_msg_id is longer than {MAX_CLIENT_MSG_ID_BYTES} bytes"),
                ));
            }
            ClientFrame::Send {
                room,
                text,
                client_msg_id,
            }
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(FrameError::new(
                ErrorCode::UnknownType,
                format!("unknown frame type {shown:?}; expected join, leave or send"),
            ));
        }
    };
    let (ClientFrame::Join { room } | ClientFrame::Leave { room } | ClientFrame::Send { room, .. }) =
        &frame;
    if !offpath_protocol::subject::is_valid_token(room) {
        return Err(FrameError::new(
            ErrorCode::InvalidRoom,
            "a room is 1-64 bytes of A-Z a-z 0-9 _ : @ = + ~ -",
        ));
    }
    Ok(frame)
}

/// A frame to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
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
    /// The connection is now a member of `room` (the answer to `join`).
    Joined {
        /// The room.
        room: String,
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
    /// A refused frame; the connection stays open unless the code says otherwise.
    Error {
        /// Stable code.
        code: String,
        /// For a person.
        message: String,
    },
}

impl ServerFrame {
    /// Serialized once; the result is cloned cheaply for every recipient.
    pub fn encode(&self) -> axum::extract::ws::Utf8Bytes {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default().into()
    }

    /// The error frame for `error`.
    pub fn error(error: &FrameError) -> Self {
        ServerFrame::Error {
            code: error.code.as_str().to_string(),
            message: error.message.clone(),
        }
    }
}

/// The same bytes as `ServerFrame::Message { .. }.encode()`, serialized from borrowed
/// fields.
pub fn encode_message(
    id: &str,
    room: &str,
    sender: &str,
    text: &str,
    sent_at_ms: u64,
) -> axum::extract::ws::Utf8Bytes {
    #[derive(Serialize)]
    #[serde(tag = "type", rename = "message")]
    struct MessageRef<'a> {
        id: &'a str,
        room: &'a str,
        sender: &'a str,
        text: &'a str,
        sent_at_ms: u64,
    }
    let frame = MessageRef {
        id,
        room,
        sender,
        text,
        sent_at_ms,
    };
    serde_json::to_string(&frame).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(frame: &str) -> ErrorCode {
        parse(frame, 10).unwrap_err().code
    }

    /// Each kind of bad frame maps to its own code; good frames parse.
    #[test]
    fn codes() {
        assert_eq!(code("{"), ErrorCode::InvalidJson);
        assert_eq!(code("[1]"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"room":"a"}"#), ErrorCode::MissingType);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::MissingType);
        assert_eq!(
            code(r#"{"type":"shout","room":"a"}"#),
            ErrorCode::UnknownType
        );
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::InvalidFrame);
        assert_eq!(
            code(r#"{"type":"join","room":"a","x":1}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code(r#"{"type":"send","room":"a","text":5}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code(r#"{"type":"join","room":"a.b"}"#),
            ErrorCode::InvalidRoom
        );
        assert_eq!(
            code(r#"{"type":"send","room":"a","text":"12345678901"}"#),
            ErrorCode::TextTooLarge
        );
        let long_id = format!(
            r#"{{"type":"send","room":"a","text":"","client_msg_id":"{}"}}"#,
            "x".repeat(129)
        );
        assert_eq!(code(&long_id), ErrorCode::InvalidClientMsgId);
        assert_eq!(
            parse(
                r#"{"type":"send","room":"a","text":"hi","client_msg_id":"c1"}"#,
                10
            ),
            Ok(ClientFrame::Send {
                room: "a".into(),
                text: "hi".into(),
                client_msg_id: Some("c1".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":"leave","room":"a"}"#, 10),
            Ok(ClientFrame::Leave { room: "a".into() })
        );
    }

    /// The borrowed `message` encoding is byte for byte the enum's.
    #[test]
    fn borrowed_message_matches_the_enum() {
        let owned = ServerFrame::Message {
            id: "i".into(),
            room: "r".into(),
            sender: "s".into(),
            text: "t \"q\"".into(),
            sent_at_ms: 7,
        };
        assert_eq!(encode_message("i", "r", "s", "t \"q\"", 7), owned.encode());
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
