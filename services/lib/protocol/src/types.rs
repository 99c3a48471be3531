//! The three payloads of wire contract v1. Field names are the contract: renaming one is a
//! breaking change and needs a new `v`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks; every payload carries it as `v`.
pub const PROTOCOL_VERSION: u32 = 1;

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
}

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

/// What the transport should do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do.
    Allow,
    /// Keep the message, tell moderators.
    Flag,
    /// Retract the message from the room and tell the sender.
    Block,
    /// No model decided (see `reason`); the room's fail-open/fail-closed policy applies.
    Unmoderated,
}

impl Action {
    /// The wire name (`allow`, `flag`, `block`, `unmoderated`), also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Block => "block",
            Action::Unmoderated => "unmoderated",
        }
    }
}

/// Which model produced a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// Model (or policy) name, e.g. `minilm-insult`.
    pub name: String,
    /// Model version from its manifest.
    pub version: String,
}

/// Which named policy decided a verdict (contract v1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// Policy name from the moderator's policy file.
    pub name: String,
    /// 12 hex digits of a digest of the policy's resolved rules and the versions of the
    /// models they read: the same on every moderator with the same file and models.
    pub version: String,
}

/// The moderator's decision on one request, published on
/// `offpath.verdict.<tenant>.<room>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// Protocol version; 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The request's id: applying the same verdict twice must change nothing.
    pub id: String,
    /// The request's tenant.
    pub tenant: String,
    /// The request's room.
    pub room: String,
    /// The request's sender.
    pub sender: String,
    /// What to do with the message.
    pub action: Action,
    /// Label → probability in [0, 1] (e.g. `insult`, `profanity`); empty when unmoderated.
    pub scores: BTreeMap<String, f32>,
    /// The model that decided.
    pub model: ModelRef,
    /// Milliseconds from `sent_at_ms` to the start of inference.
    pub queued_ms: u64,
    /// Milliseconds spent in inference (0 when none ran).
    pub inference_ms: u64,
    /// Why the message is `unmoderated` (`expired`, `overloaded`, `model_error`, …);
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Contract v1.1: lowercase hex SHA-256 of the UTF-8 `text` of the request this verdict
    /// judged, so a transport can refuse a verdict for a text it did not send. Always
    /// present from v1.1 moderators; the reference transport refuses a verdict without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub text_sha256: Option<String>,
    /// Contract v1.1: the named policy that decided (its thresholds and actions), present
    /// when the moderator runs with a policy file; absent from a moderator without one.
    /// `scores` then holds the labels of that policy's models only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Contract v1.1: present on a *human* verdict, a reviewer's decision on a message in
    /// the review queue (`remove` with action `block`, `restore` with action `allow`). A
    /// transport applies it even after the model's verdict: `remove` retracts the message,
    /// `restore` delivers it (again). Absent from every model verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<HumanReview>,
}

/// Contract v1.1: a reviewer's decision, on a human verdict and in the audit stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanReview {
    /// Who decided (the reviewer's name).
    pub reviewer: String,
    /// What they decided.
    pub decision: ReviewDecision,
    /// When, milliseconds since the Unix epoch.
    pub decided_at_ms: u64,
    /// Why, in the reviewer's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// On `restore`: the text to deliver again (its SHA-256 is the verdict's
    /// `text_sha256`; a transport delivers nothing else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A reviewer's decision on a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// Take it out of the room (a human `block` verdict).
    Remove,
    /// Put it back in the room (a human `allow` verdict).
    Restore,
    /// Nothing to do: the model's verdict stands (audit only).
    Dismiss,
    /// For a senior reviewer (audit only; the item stays open).
    Escalate,
}

impl ReviewDecision {
    /// Every decision, for metrics that exist from the start.
    pub const ALL: [ReviewDecision; 4] = [
        ReviewDecision::Remove,
        ReviewDecision::Restore,
        ReviewDecision::Dismiss,
        ReviewDecision::Escalate,
    ];

    /// The decision as its JSON spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Remove => "remove",
            ReviewDecision::Restore => "restore",
            ReviewDecision::Dismiss => "dismiss",
            ReviewDecision::Escalate => "escalate",
        }
    }

    /// The action of the human verdict it publishes; `None`: it publishes none.
    pub const fn action(self) -> Option<Action> {
        match self {
            ReviewDecision::Remove => Some(Action::Block),
            ReviewDecision::Restore => Some(Action::Allow),
            ReviewDecision::Dismiss | ReviewDecision::Escalate => None,
        }
    }
}

/// Contract v1.1: one reviewer decision, published on `offpath.audit.<tenant>` and kept in
/// the `AUDIT` stream: who decided what, when and why, on which queued message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Protocol version; 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The decision.
    pub review: HumanReview,
    /// The queued item it decided on.
    pub item: ReviewItem,
}

/// Contract v1.1: a message a person should look at, published on
/// `offpath.review.<tenant>` and kept in the `REVIEW` stream (the review queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewItem {
    /// Protocol version; 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Why it is in the queue.
    pub kind: ReviewKind,
    /// The verdict that put it there: message id, tenant, room, sender, action, scores,
    /// model, policy and `text_sha256` (of `text`).
    pub verdict: Verdict,
    /// The text judged.
    pub text: String,
    /// When the sender's gateway accepted the message (the request's `sent_at_ms`).
    pub sent_at_ms: u64,
    /// When it was queued for review, milliseconds since the Unix epoch.
    pub queued_at_ms: u64,
    /// On a `report`: who reported the message, why, and where its text comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// The messages shown in the room just before it, oldest first (the request's
    /// `context`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<ContextMessage>,
}

/// Why a message is in the review queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewKind {
    /// Its policy flagged it: kept in the room, a person decides.
    Flag,
    /// Its policy blocked it and asks for blocked messages to be reviewed
    /// (`review_blocked`): a person may restore it.
    Block,
    /// A room member reported it (whatever the model said): a person decides. Listed
    /// first by the reviewers' console.
    Report,
}

impl ReviewKind {
    /// Every kind, for metrics that exist from the start.
    pub const ALL: [ReviewKind; 3] = [ReviewKind::Flag, ReviewKind::Block, ReviewKind::Report];

    /// The kind as its JSON spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewKind::Flag => "flag",
            ReviewKind::Block => "block",
            ReviewKind::Report => "report",
        }
    }
}

impl ReviewItem {
    /// The item of `kind` for `verdict` on `text` sent at `sent_at_ms`, queued now, with no
    /// report and no context.
    pub fn new(kind: ReviewKind, verdict: &Verdict, text: &str, sent_at_ms: u64) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            kind,
            verdict: verdict.clone(),
            text: text.to_string(),
            sent_at_ms,
            queued_at_ms: crate::now_ms(),
            report: None,
            context: Vec::new(),
        }
    }

    /// The subject it is published on: `offpath.review.<tenant>`.
    pub fn subject(&self) -> String {
        crate::subject::review_subject(&self.verdict.tenant)
    }

    /// The `Nats-Msg-Id` header it is published with: the verdict's key and the kind, so a
    /// redelivered request queues its message once; a report's also names its reporter, so
    /// each member's report of a message is an item of its own.
    pub fn dedup_key(&self) -> String {
        let key = format!("{}/{}", self.verdict.dedup_key(), self.kind.as_str());
        match &self.report {
            Some(report) => format!("{key}/{}", report.reporter),
            None => key,
        }
    }
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

impl Verdict {
    /// The `Nats-Msg-Id` header of this verdict in `VERDICTS`: `<tenant>/<id>/<text_sha256>`
    /// (`<tenant>/<id>` without a digest). A redelivered request's second verdict (same
    /// text) is dropped as a duplicate; a verdict for another text under the same id (a
    /// forged request) is stored beside it instead of taking its place.
    pub fn dedup_key(&self) -> String {
        let key = match &self.text_sha256 {
            Some(digest) => format!("{}/{}/{digest}", self.tenant, self.id),
            None => format!("{}/{}", self.tenant, self.id),
        };
        match &self.review {
            // A human verdict is stored beside the model's, once per decision.
            Some(review) => format!(
                "{key}/{}/{}",
                review.decision.as_str(),
                review.decided_at_ms
            ),
            None => key,
        }
    }

    /// Whether this verdict judged exactly `text`: its `text_sha256` is present and equals
    /// [`text_sha256`] of `text`.
    pub fn judged(&self, text: &str) -> bool {
        self.text_sha256.as_deref() == Some(text_sha256(text).as_str())
    }
}

/// Lowercase hex SHA-256 of the UTF-8 bytes of `text`: a verdict's `text_sha256`.
pub fn text_sha256(text: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// A request that could not be processed, published on `offpath.dlq.<tenant>`: the original
/// bytes are kept so an operator can inspect, fix and re-publish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// Protocol version; 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The subject the original was published on.
    pub subject: String,
    /// The original payload bytes, standard base64 with padding.
    pub data: String,
    /// Stable machine-readable reason (see `docs/protocol.md`), e.g. `malformed_json`,
    /// `oversized`, `max_deliveries`.
    pub reason: String,
    /// Human-readable detail for the operator.
    pub detail: String,
    /// How many times the original was delivered to a moderator.
    pub deliveries: u64,
    /// The original's sequence number in the `MODERATION` stream, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<u64>,
    /// The original's id, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it was dead-lettered, milliseconds since the Unix epoch.
    pub failed_at_ms: u64,
}

impl DeadLetter {
    /// A dead letter for `payload`, received on `subject`, rejected with `error`.
    pub fn new(
        subject: &str,
        payload: &[u8],
        reason: &str,
        detail: String,
        deliveries: u64,
        failed_at_ms: u64,
    ) -> Self {
        use base64::Engine;
        Self {
            v: PROTOCOL_VERSION,
            subject: subject.to_string(),
            data: base64::engine::general_purpose::STANDARD.encode(payload),
            reason: reason.to_string(),
            detail,
            deliveries,
            stream_seq: None,
            id: None,
            failed_at_ms,
        }
    }

    /// The original payload bytes, or `None` when `data` is not valid base64.
    pub fn original(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `priority: high` goes to the interactive lane, anything else to the v1 subject; both
    /// give the tenant back and the same dead-letter subject.
    #[test]
    fn a_request_chooses_its_lane_by_priority() {
        use crate::subject::{dlq_subject_for, tenant_of_request_subject};
        let mut request = ModerationRequest {
            v: 1,
            id: "i".into(),
            tenant: "acme".into(),
            room: "r".into(),
            sender: "s".into(),
            text: "t".into(),
            sent_at_ms: 0,
            deadline_ms: None,
            priority: None,
            policy: None,
            report: None,
            context: Vec::new(),
        };
        for (priority, subject) in [
            (None, "offpath.req.acme"),
            (Some(Priority::Low), "offpath.req.acme"),
            (Some(Priority::Normal), "offpath.req.acme"),
            (Some(Priority::High), "offpath.req.acme.interactive"),
        ] {
            request.priority = priority;
            assert_eq!(request.subject(), subject);
            assert_eq!(tenant_of_request_subject(subject), Some("acme"));
            assert_eq!(dlq_subject_for(subject), "offpath.dlq.acme");
        }
    }

    /// The digest is SHA-256 of the UTF-8 bytes in lowercase hex (the FIPS 180-2 vectors).
    #[test]
    fn text_sha256_is_lowercase_hex_sha256() {
        assert_eq!(
            text_sha256(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            text_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// v1.1 is additive: a verdict without `text_sha256` (a v1 moderator's) still decodes,
    /// one with it round-trips, and it is left out of the JSON when absent.
    #[test]
    fn text_sha256_is_optional_on_the_wire() {
        let v1 = r#"{"v":1,"id":"i","tenant":"t","room":"r","sender":"s","action":"allow",
            "scores":{},"model":{"name":"m","version":"1"},"queued_ms":0,"inference_ms":0}"#;
        let mut verdict: Verdict = crate::decode_versioned(v1.as_bytes(), 4096).expect("v1");
        assert_eq!(verdict.text_sha256, None);
        assert!(
            !String::from_utf8(crate::encode(&verdict))
                .unwrap()
                .contains("text_sha256")
        );
        verdict.text_sha256 = Some(text_sha256("hi"));
        let back: Verdict = crate::decode_versioned(&crate::encode(&verdict), 4096).expect("v1.1");
        assert!(back.judged("hi") && !back.judged("hi "));
        assert_eq!(back.dedup_key(), format!("t/i/{}", text_sha256("hi")));
    }

    /// Two tenants' requests with the same id have different de-duplication keys, and no
    /// choice of tenant and id (`:` is allowed in both) makes two keys collide.
    #[test]
    fn dedup_keys_are_per_tenant_and_unambiguous() {
        let request = |tenant: &str, id: &str| ModerationRequest {
            v: PROTOCOL_VERSION,
            id: id.into(),
            tenant: tenant.into(),
            room: "r".into(),
            sender: "s".into(),
            text: String::new(),
            sent_at_ms: 0,
            deadline_ms: None,
            priority: None,
            policy: None,
            report: None,
            context: Vec::new(),
        };
        assert_ne!(
            request("acme", "msg-42").dedup_key(),
            request("globex", "msg-42").dedup_key()
        );
        assert_ne!(
            request("a:b", "c").dedup_key(),
            request("a", "b:c").dedup_key()
        );
    }
}
