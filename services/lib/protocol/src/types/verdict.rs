//! The verdict a moderator publishes: its action, the model and policy that decided it,
//! and (contract v1.1) a reviewer's decision when it is a human verdict.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Why the message is `unmoderated` (`expired`, `overloaded`, `model_error`, …), or
    /// (v1.5) why a `flag` is not the block it would have been (`brake`); absent otherwise.
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
    /// Contract v1.2: the label that decided a `flag` or `block` (of the labels whose
    /// decision is the verdict's action, the one with the highest score), e.g.
    /// `harassment`; absent on `allow`, `unmoderated` and human verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub category: Option<String>,
    /// Contract v1.3: where in the text the deciding `category` scored highest, when the
    /// model could tell a part from the whole; absent otherwise (a short text that decides
    /// as a whole, a disguised text only its normalised form showed, human verdicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    /// Contract v1.3: the policy's text rule (keywords, regex, links, density) that decided,
    /// by its name in the policy file: the models did not run (`scores` is empty), or, for
    /// a rule with `then = "models"`, the rule's action prevailed over theirs. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub rule: Option<String>,
    /// Contract v1.5: the near-duplicate campaign the message belongs to (16 lowercase hex
    /// digits), when a `campaign` rule decided it: the same id on every verdict of the
    /// campaign's members that one moderator judged. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{16}$"))]
    pub campaign: Option<String>,
    /// Contract v1.5: what the deciding `rule` counted, when it counts a sender's window or
    /// a campaign: `messages`, `repeats`, `strikes`, `links`, `mentions` (the sender's, in
    /// the rule's window, this message included; strikes before it), `copies` and
    /// `senders` (near-duplicates and their senders). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<BTreeMap<String, u64>>,
}

/// Contract v1.3: a part of the request's text, in bytes of its UTF-8 encoding, and the
/// deciding category's score on that part alone. A consumer checks `start < end <=` the
/// text's length and character boundaries before it slices: a verdict is data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// First byte of the part.
    pub start: u32,
    /// One past its last byte.
    pub end: u32,
    /// The category's probability on the part alone, in [0, 1].
    pub score: f32,
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
