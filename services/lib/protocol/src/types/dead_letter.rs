//! The dead letter: a request no moderator could process, kept for an operator.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PROTOCOL_VERSION;

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
