//! The review queue's payloads (contract v1.1): an item a person should look at, why it
//! is queued, and the audit entry of a decision on it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ContextMessage, HumanReview, PROTOCOL_VERSION, Report, Verdict};

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
