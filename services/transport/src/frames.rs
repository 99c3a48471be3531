//! The websocket protocol between chat clients and the gateway: JSON text frames.
//!
//! Client → server: `join`, `leave`, `send`, `report`. Server → client: `joined`, `left`,
//! `ack`, `message`, `verdict`, `retract`, `reported`, `error` ([`ServerFrame`]). A bad frame gets an `error`
//! frame with a stable `code`; the connection survives it.
//!
//! Public only for the fuzz target (`fuzz/fuzz_targets/client_frame.rs`, [`parse`]) and
//! the integration tests ([`ErrorCode::ALL`]); not an API.

mod close;
mod server;
mod text;

use serde::Deserialize;

pub(crate) use close::Close;
pub(crate) use server::{
    HISTORY_BYTES, HISTORY_JOINS, HISTORY_MESSAGES, HistoryMessage, ServerFrame, encode_message,
    message_frame,
};
pub(crate) use text::for_review;

/// Longest `client_msg_id` echoed back, in bytes.
pub(crate) const MAX_CLIENT_MSG_ID_BYTES: usize = 128;

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
        /// End-to-end-encrypted rooms only: lowercase hex HMAC-SHA256 of the plaintext
        /// under a key sent inside the ciphertext (message franking), so a report of this
        /// message can be checked. Relayed with the message.
        commitment: Option<String>,
    },
    /// Report a message of a room the connection has joined to the reviewers.
    Report {
        /// The room.
        room: String,
        /// The reported message's id.
        id: String,
        /// Why (may be empty).
        reason: String,
        /// End-to-end-encrypted rooms only: the message's plaintext, as the reporter's
        /// client decrypted it (ignored elsewhere: the gateway reports the text it relayed).
        text: Option<String>,
        /// End-to-end-encrypted rooms only: the franking key (64 hex digits) that opens the
        /// message's `commitment`.
        key: Option<String>,
    },
}

/// Why a client frame was refused: the `code` of the error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, not an object, or an object with the same key twice.
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
    /// The text holds a control character (see `frames/text.rs` for the rule).
    InvalidText,
    /// A send to a room the connection has not joined.
    NotAMember,
    /// A join past the per-connection room limit.
    TooManyRooms,
    /// A `join` to a room the connection's token does not allow (its `rooms` claim).
    ForbiddenRoom,
    /// Sending faster than the per-connection rate limit.
    RateLimited,
    /// The gateway is at its connection limit.
    TooManyConnections,
    /// The gateway is shutting down.
    ShuttingDown,
    /// A `report` of a message this gateway does not hold among the room's latest
    /// (`--report-window`), or one that was removed.
    UnknownMessage,
    /// A `report` the gateway cannot take: of the reporter's own message, without the
    /// plaintext in an end-to-end-encrypted room, too large for a moderation request, or on
    /// a gateway without moderation.
    InvalidReport,
    /// A `report` that could not be queued now (the outbox is full or closing); try again.
    ReportUnavailable,
}

impl ErrorCode {
    /// Every code, for tests and metric pre-registration.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidJson,
        ErrorCode::BinaryFrame,
        ErrorCode::MissingType,
        ErrorCode::UnknownType,
        ErrorCode::InvalidFrame,
        ErrorCode::InvalidRoom,
        ErrorCode::TextTooLarge,
        ErrorCode::InvalidClientMsgId,
        ErrorCode::InvalidText,
        ErrorCode::NotAMember,
        ErrorCode::TooManyRooms,
        ErrorCode::ForbiddenRoom,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::ShuttingDown,
        ErrorCode::UnknownMessage,
        ErrorCode::InvalidReport,
        ErrorCode::ReportUnavailable,
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
            ErrorCode::InvalidText => "invalid_text",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::ForbiddenRoom => "forbidden_room",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::InvalidReport => "invalid_report",
            ErrorCode::ReportUnavailable => "report_unavailable",
        }
    }
}

/// A refused frame: the code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Stable machine-readable code.
    pub(crate) code: ErrorCode,
    /// What was wrong.
    pub(crate) message: String,
}

impl FrameError {
    /// An error with `code` and `message`.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
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
    #[serde(default)]
    commitment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportFrame {
    #[serde(rename = "type")]
    _kind: String,
    room: String,
    id: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// Lowercase or uppercase hex of 32 bytes (a commitment or a franking key).
fn is_hex_32(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses and validates a text frame. `max_text_bytes` bounds `send` texts, whose text is
/// refused or cleaned by the text rule (`frames/text.rs`).
pub fn parse(frame: &str, max_text_bytes: usize) -> Result<ClientFrame, FrameError> {
    // Each key at most once: `{"type":"join","type":"send",…}` is not two frames in one.
    let value = offpath_protocol::from_str_unique_keys(frame)
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
        "send" => send(
            serde_json::from_value(value).map_err(invalid)?,
            max_text_bytes,
        )?,
        "report" => report(
            serde_json::from_value(value).map_err(invalid)?,
            max_text_bytes,
        )?,
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(FrameError::new(
                ErrorCode::UnknownType,
                format!("unknown frame type {shown:?}; expected join, leave, send or report"),
            ));
        }
    };
    let (ClientFrame::Join { room }
    | ClientFrame::Leave { room }
    | ClientFrame::Send { room, .. }
    | ClientFrame::Report { room, .. }) = &frame;
    if !offpath_protocol::subject::is_valid_token(room) {
        return Err(FrameError::new(
            ErrorCode::InvalidRoom,
            "a room is 1-64 bytes of A-Z a-z 0-9 _ : @ = + ~ -",
        ));
    }
    Ok(frame)
}

/// A `send` frame within the limits on its text and `client_msg_id`.
fn send(frame: SendFrame, max_text_bytes: usize) -> Result<ClientFrame, FrameError> {
    let SendFrame {
        room,
        text,
        client_msg_id,
        commitment,
        ..
    } = frame;
    if commitment.as_deref().is_some_and(|c| !is_hex_32(c)) {
        return Err(FrameError::new(
            ErrorCode::InvalidFrame,
            "send frame: commitment is 64 hex digits (HMAC-SHA256)",
        ));
    }
    let commitment = commitment.map(|c| c.to_ascii_lowercase());
    if text.len() > max_text_bytes {
        return Err(FrameError::new(
            ErrorCode::TextTooLarge,
            format!(
                "text is {} bytes; the limit is {max_text_bytes}",
                text.len()
            ),
        ));
    }
    if client_msg_id.as_ref().is_some_and(|id| {
        id.len() > MAX_CLIENT_MSG_ID_BYTES
            || id
                .chars()
                .any(|c| text::is_refused(c) || text::is_stripped(c))
    }) {
        return Err(FrameError::new(
            ErrorCode::InvalidClientMsgId,
            format!(
                "client_msg_id is longer than {MAX_CLIENT_MSG_ID_BYTES} bytes or holds a \
                 control, bidi or invisible character"
            ),
        ));
    }
    if let Some(c) = text::refused(&text) {
        return Err(FrameError::new(
            ErrorCode::InvalidText,
            format!(
                "text holds the control character U+{:04X}; only tab and newline are allowed",
                u32::from(c)
            ),
        ));
    }
    let was_empty = text.is_empty();
    let text = text::strip(text);
    if text.is_empty() && !was_empty {
        return Err(FrameError::new(
            ErrorCode::InvalidText,
            "text holds only invisible or formatting characters",
        ));
    }
    Ok(ClientFrame::Send {
        room,
        text,
        client_msg_id,
        commitment,
    })
}

/// A `report` frame within the limits on its id, reason, plaintext and key.
fn report(frame: ReportFrame, max_text_bytes: usize) -> Result<ClientFrame, FrameError> {
    let ReportFrame {
        room,
        id,
        reason,
        text,
        key,
        ..
    } = frame;
    if !offpath_protocol::subject::is_valid_id(&id) {
        return Err(FrameError::new(
            ErrorCode::InvalidFrame,
            "report frame: id is a message id from a `message` frame",
        ));
    }
    let reason = reason.unwrap_or_default();
    if reason.chars().count() > offpath_protocol::MAX_REPORT_REASON_CHARS
        || reason.chars().any(text::is_refused)
    {
        return Err(FrameError::new(
            ErrorCode::InvalidReport,
            format!(
                "a reason is at most {} characters, with no control character but tab and \
                 newline",
                offpath_protocol::MAX_REPORT_REASON_CHARS
            ),
        ));
    }
    if key.as_deref().is_some_and(|k| !is_hex_32(k)) {
        return Err(FrameError::new(
            ErrorCode::InvalidFrame,
            "report frame: key is 64 hex digits",
        ));
    }
    if text.as_ref().is_some_and(|t| t.len() > max_text_bytes) {
        return Err(FrameError::new(
            ErrorCode::TextTooLarge,
            format!("the reported text is longer than {max_text_bytes} bytes"),
        ));
    }
    Ok(ClientFrame::Report {
        room,
        id,
        reason: text::strip(reason),
        text,
        key: key.map(|k| k.to_ascii_lowercase()),
    })
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
                client_msg_id: Some("c1".into()),
                commitment: None,
            })
        );
        assert_eq!(
            parse(r#"{"type":"leave","room":"a"}"#, 10),
            Ok(ClientFrame::Leave { room: "a".into() })
        );
    }

    /// A repeated key is refused, whichever copy a reader would keep.
    #[test]
    fn duplicate_keys_are_refused() {
        for frame in [
            r#"{"type":"join","type":"send","room":"a","text":"x"}"#,
            r#"{"type":"send","room":"a","text":"hi","text":"insult"}"#,
        ] {
            let err = parse(frame, 10).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidJson, "{frame}");
            assert!(err.message.contains("duplicate key"), "{}", err.message);
        }
    }

    proptest::proptest! {
        /// Whatever text a client sends, a text the gateway accepts (to broadcast and to
        /// moderate) holds no refused or stripped character, and nothing else is removed.
        #[test]
        fn accepted_texts_hold_no_forbidden_character(text in "(\\PC|\\p{Cc}|\\p{Cf}|[\u{200b}-\u{206f}])*") {
            let frame = serde_json::json!({"type": "send", "room": "a", "text": text});
            match parse(&frame.to_string(), 1 << 20) {
                Ok(ClientFrame::Send { text: sent, .. }) => {
                    proptest::prop_assert!(!sent.chars().any(|c| text::is_refused(c) || text::is_stripped(c)));
                    // Only removals: what is sent is the text with characters left out.
                    let mut rest = text.chars();
                    proptest::prop_assert!(sent.chars().all(|c| rest.any(|t| t == c)));
                    // Nothing is removed from a text without anything to strip.
                    if !text.chars().any(|c| text::is_stripped(c) || text::is_tag(c) || text::is_combining_mark(c)) {
                        proptest::prop_assert_eq!(&sent, &text);
                    }
                }
                Ok(other) => proptest::prop_assert!(false, "not a send: {:?}", other),
                Err(err) => {
                    proptest::prop_assert_eq!(err.code, ErrorCode::InvalidText);
                    let only_stripped = !text.is_empty() && text.chars().all(|c| text::is_stripped(c) || text::is_tag(c));
                    proptest::prop_assert!(text.chars().any(text::is_refused) || only_stripped);
                }
            }
        }
    }
}
