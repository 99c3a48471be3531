//! The request a transport publishes, and the parts it carries: the scheduling hint, a
//! member's report (contract v1.1) and the messages shown before it (review context).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// For the documentation's link only.
#[cfg(doc)]
use super::ReviewItem;

/// A chat message to classify, published by a transport on `offpath.req.<tenant>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    /// Protocol version; must be 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Unique message id, assigned by the transport; unguessable (the reference transport
    /// puts 128 random bits in it), so nobody can publish a request for an id before its
    /// message exists. The `Nats-Msg-Id` header is `<tenant>/<id>`, so JetStream drops a
    /// re-published duplicate of this tenant's request only.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_:.@=+~-]+$"))]
    pub id: String,
    /// Tenant (one chat platform or workspace); equals the last token of the subject.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_:@=+~-]+$"))]
    pub tenant: String,
    /// Room the message was sent to; becomes a token of the verdict subject.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_:@=+~-]+$"))]
    pub room: String,
    /// Who sent the message (the transport's user id).
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[^\u0000-\u001f\u007f]+$")
    )]
    pub sender: String,
    /// The message text (any UTF-8, may be empty). The whole payload is size-limited
    /// (16 KiB by default).
    pub text: String,
    /// When the transport accepted the message, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// Absolute deadline, milliseconds since the Unix epoch: past it a verdict is useless
    /// and the moderator answers `unmoderated` with reason `expired` without inference.
    /// Must not be before `sent_at_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Scheduling hint; `normal` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Name of the moderation policy (models, thresholds, actions) to apply, from the
    /// moderators' policy file; when absent, unknown, or not allowed for the tenant, the
    /// file's rules for the tenant and room decide (`docs/protocol.md`, "Policies").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_:@=+~-]+$"))]
    pub policy: Option<String>,
    /// Contract v1.1: present when this request is a room member's *report* of an earlier
    /// message (`id` is then the report's own id; `text`, `sender` and `room` are the
    /// reported message's). A moderator publishes no verdict for it: it classifies the text
    /// and always queues a [`ReviewItem`] of kind `report` whose verdict names the reported
    /// message, so a reviewer's decision acts on that message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// Contract v1.1: the messages shown in the room just before this one, oldest first (at
    /// most [`MAX_CONTEXT_MESSAGES`], each text at most [`MAX_CONTEXT_TEXT_BYTES`] bytes),
    /// for a reviewer should the message reach the review queue. Empty when the transport
    /// keeps none (an end-to-end-encrypted room's messages are never context).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub context: Vec<ContextMessage>,
    /// Contract v1.4: the users this message mentions (notifies), as the transport resolved
    /// them (display-name mentions included), each once, at most [`MAX_MENTIONS`]; each a
    /// user id as `sender` is. Sender rules count them (`docs/protocol.md`, "Sender rules").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub mentions: Vec<String>,
    /// Contract v1.4: when the sender's account was created, milliseconds since the Unix
    /// epoch, as the platform vouches for it (the reference gateway: the token's
    /// `account_created_at` claim); not after `sent_at_ms`. Absent when nobody vouches.
    /// New-account rules read it (`docs/protocol.md`, "Text rules").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_created_ms: Option<u64>,
}

/// Most mentions a request may carry.
pub const MAX_MENTIONS: usize = 100;

/// Most context messages a request may carry.
pub const MAX_CONTEXT_MESSAGES: usize = 10;
/// Longest context message text, in bytes (a transport shortens longer ones).
pub const MAX_CONTEXT_TEXT_BYTES: usize = 1024;
/// Longest reason a reporter may give, in characters.
pub const MAX_REPORT_REASON_CHARS: usize = 500;

/// Contract v1.1: one message shown in a room before the one judged (review context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextMessage {
    /// Its message id.
    pub id: String,
    /// Who sent it.
    pub sender: String,
    /// Its text (shortened to [`MAX_CONTEXT_TEXT_BYTES`] bytes, ending in `…`).
    #[schemars(length(max = 1027))]
    pub text: String,
    /// When its gateway accepted it, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// Contract v1.1: a room member's report of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The reported message's id.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_:.@=+~-]+$"))]
    pub message_id: String,
    /// Who reported it (the reporter's user id).
    #[schemars(length(min = 1, max = 256))]
    pub reporter: String,
    /// Why, in the reporter's words (may be empty).
    #[schemars(length(max = 500))]
    pub reason: String,
    /// When the reported message was accepted by its gateway, ms since the Unix epoch.
    pub message_sent_at_ms: u64,
    /// Where the reported `text` comes from, and so how far it can be trusted.
    pub text_source: TextSource,
}

/// Where a reported text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// The gateway relayed this text itself (a room the server can read).
    Gateway,
    /// End-to-end-encrypted room: the reporter's client submitted the plaintext with the
    /// key of the sender's commitment, and the gateway checked it (message franking): the
    /// sender did send this text.
    Franked,
    /// End-to-end-encrypted room, message sent without a commitment (or reported without
    /// its key): the plaintext is the reporter's word only.
    Reporter,
    /// End-to-end-encrypted room: the submitted plaintext and key do not open the sender's
    /// commitment. The reporter's client, or the sender's (a commitment that opens nothing
    /// makes a message unverifiable), did not tell the truth.
    Mismatch,
}

impl TextSource {
    /// The source as its JSON spells it (a metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            TextSource::Gateway => "gateway",
            TextSource::Franked => "franked",
            TextSource::Reporter => "reporter",
            TextSource::Mismatch => "mismatch",
        }
    }
}

/// Scheduling hint of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Background traffic (bulk imports, re-scans).
    Low,
    /// Ordinary chat.
    Normal,
    /// Someone is waiting on this verdict (pre-moderated rooms).
    High,
}

impl ModerationRequest {
    /// The subject to publish this request on: `priority: high` (someone waits for the
    /// verdict: a hold room) goes to the interactive lane, `offpath.req.<tenant>.interactive`,
    /// which moderators take first; everything else to `offpath.req.<tenant>` (v1).
    pub fn subject(&self) -> String {
        match self.priority {
            Some(Priority::High) => crate::subject::interactive_request_subject(&self.tenant),
            _ => crate::subject::request_subject(&self.tenant),
        }
    }

    /// The `Nats-Msg-Id` header every publisher sends with this request: `<tenant>/<id>`.
    /// De-duplication in `MODERATION` is stream-wide while ids are unique per tenant only;
    /// `/` is in neither a tenant nor an id, so keys of two tenants never collide (and a
    /// v1 publisher's bare id never equals another tenant's key).
    pub fn dedup_key(&self) -> String {
        format!("{}/{}", self.tenant, self.id)
    }
}
