//! The three payloads of wire contract v1. Field names are the contract: renaming one is a
//! breaking change and needs a new `v`.
//!
//! One module per payload: `request` (a transport's request), `verdict` (a moderator's
//! verdict, human verdicts included), `review` (the review queue and its audit trail) and
//! `dead_letter` (a request that could not be processed).

mod dead_letter;
mod request;
mod review;
mod verdict;

pub use dead_letter::DeadLetter;
pub use request::{
    ContextMessage, MAX_CONTEXT_MESSAGES, MAX_CONTEXT_TEXT_BYTES, MAX_MENTIONS,
    MAX_REPORT_REASON_CHARS, ModerationRequest, Priority, Report, TextSource,
};
pub use review::{AuditEntry, ReviewItem, ReviewKind};
pub use verdict::{
    Action, HumanReview, ModelRef, PolicyRef, ReviewDecision, Span, Verdict, text_sha256,
};

/// The protocol version this crate speaks; every payload carries it as `v`.
pub const PROTOCOL_VERSION: u32 = 1;

#[cfg(test)]
mod tests;
