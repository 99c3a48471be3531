//! Subject and stream names, and the token rules that keep them safe.
//!
//! A tenant or room becomes a subject token, so it must not contain `.` (a token separator),
//! `*` or `>` (wildcards) or whitespace. We accept a conservative ASCII set that also keeps
//! tokens readable in metrics and logs: `A–Z a–z 0–9 _ : @ = + ~ -`, 1–64 bytes.

/// Stream holding requests until a moderator acks them (work-queue retention).
pub const MODERATION_STREAM: &str = "MODERATION";
/// Stream holding the interactive lane's requests (work-queue retention): messages a user
/// waits for (hold rooms), which moderators take before the bulk lane's.
pub const INTERACTIVE_STREAM: &str = "MODERATION_INTERACTIVE";
/// The last token of an interactive lane's request subject:
/// `offpath.req.<tenant>.interactive`.
pub const INTERACTIVE_LANE: &str = "interactive";
/// Stream holding verdicts for catch-up and audit (limits retention).
pub const VERDICTS_STREAM: &str = "VERDICTS";
/// Stream holding dead letters for operators.
pub const DLQ_STREAM: &str = "MODERATION_DLQ";
/// Stream holding the review queue: messages a person should look at (limits retention).
pub const REVIEW_STREAM: &str = "REVIEW";
/// Stream holding reviewers' decisions (limits retention, a year): the audit trail.
pub const AUDIT_STREAM: &str = "AUDIT";
/// Stream holding what senders did lately (limits retention): the moderators' shared
/// sender state (issue 30), each moderator folding all of it into its own memory.
pub const SENDERS_STREAM: &str = "SENDERS";
/// The durable pull consumer every moderator process shares.
pub const MODERATOR_CONSUMER: &str = "moderator";

/// Prefix of request subjects: `offpath.req.<tenant>`.
pub const REQUEST_PREFIX: &str = "offpath.req";
/// Prefix of verdict subjects: `offpath.verdict.<tenant>.<room>`.
pub const VERDICT_PREFIX: &str = "offpath.verdict";
/// Prefix of dead-letter subjects: `offpath.dlq.<tenant>`.
pub const DLQ_PREFIX: &str = "offpath.dlq";
/// Prefix of review-queue subjects: `offpath.review.<tenant>` (contract v1.1).
pub const REVIEW_PREFIX: &str = "offpath.review";
/// Prefix of audit subjects: `offpath.audit.<tenant>` (contract v1.1).
pub const AUDIT_PREFIX: &str = "offpath.audit";
/// Prefix of sender-event subjects: `offpath.sender.<tenant>` (moderators only).
pub const SENDER_PREFIX: &str = "offpath.sender";
/// Subject of the moderators' synchronous endpoint (NATS request/reply, `ModerationRequest`
/// in, `Verdict` out).
pub const CLASSIFY_SUBJECT: &str = "offpath.classify";
/// JetStream key-value bucket holding the fleet's policy file (`offpath policy push`);
/// every moderator watches it. Its stream is `KV_offpath-policies`.
pub const POLICY_BUCKET: &str = "offpath-policies";
/// The key of the policy file in [`POLICY_BUCKET`].
pub const POLICY_KEY: &str = "policies";

/// Tenant token used for a dead letter whose subject gave no usable tenant.
pub const UNKNOWN_TENANT: &str = "_unknown";

/// Longest tenant, room or policy token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 64;
/// Longest message id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// `offpath.req.<tenant>`.
pub fn request_subject(tenant: &str) -> String {
    format!("{REQUEST_PREFIX}.{tenant}")
}

/// `offpath.req.<tenant>.interactive`: the interactive lane (contract v1.1).
pub fn interactive_request_subject(tenant: &str) -> String {
    format!("{REQUEST_PREFIX}.{tenant}.{INTERACTIVE_LANE}")
}

/// `offpath.verdict.<tenant>.<room>`.
pub fn verdict_subject(tenant: &str, room: &str) -> String {
    format!("{VERDICT_PREFIX}.{tenant}.{room}")
}

/// `offpath.review.<tenant>`: the tenant's review queue (contract v1.1).
pub fn review_subject(tenant: &str) -> String {
    format!("{REVIEW_PREFIX}.{tenant}")
}

/// `offpath.audit.<tenant>`: the tenant's reviewer decisions (contract v1.1).
pub fn audit_subject(tenant: &str) -> String {
    format!("{AUDIT_PREFIX}.{tenant}")
}

/// `offpath.sender.<tenant>`: what the tenant's senders did (moderators only).
pub fn sender_subject(tenant: &str) -> String {
    format!("{SENDER_PREFIX}.{tenant}")
}

/// `offpath.dlq.<tenant>`.
pub fn dlq_subject(tenant: &str) -> String {
    format!("{DLQ_PREFIX}.{tenant}")
}

/// The tenant token of a request subject, if it is `offpath.req.<valid token>` (the bulk
/// lane, v1) or `offpath.req.<valid token>.interactive` (the interactive lane, v1.1).
pub fn tenant_of_request_subject(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix(REQUEST_PREFIX)?.strip_prefix('.')?;
    let tenant = match rest.split_once('.') {
        Some((tenant, INTERACTIVE_LANE)) => tenant,
        Some(_) => return None,
        None => rest,
    };
    is_valid_token(tenant).then_some(tenant)
}

/// The dead-letter subject for a request that arrived on `request_subject`; a subject with
/// no valid tenant goes to `offpath.dlq._unknown` so nothing is lost.
pub fn dlq_subject_for(request_subject: &str) -> String {
    dlq_subject(tenant_of_request_subject(request_subject).unwrap_or(UNKNOWN_TENANT))
}

/// Whether `token` is a valid tenant, room or policy name.
pub fn is_valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_BYTES).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:@=+~-".contains(&b))
}

/// Whether `id` is a valid message id: 1–128 bytes of `A–Z a–z 0–9 _ : . @ = + ~ -`
/// (safe as a `Nats-Msg-Id` header value).
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:.@=+~-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subjects are built from their documented prefixes.
    #[test]
    fn builds_subjects() {
        assert_eq!(request_subject("acme"), "offpath.req.acme");
        assert_eq!(
            verdict_subject("acme", "lobby"),
            "offpath.verdict.acme.lobby"
        );
        assert_eq!(dlq_subject("acme"), "offpath.dlq.acme");
    }

    /// Wildcards, separators, whitespace, empty and over-long tokens are rejected.
    #[test]
    fn validates_tokens() {
        for good in [
            "acme",
            "room-1",
            "dm:alice:bob",
            "a_b",
            "x=y+z~",
            &"a".repeat(64),
        ] {
            assert!(is_valid_token(good), "{good:?} should be valid");
        }
        for bad in [
            "",
            "a.b",
            "*",
            ">",
            "a b",
            "tab\t",
            "é",
            "$SYS",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_token(bad), "{bad:?} should be invalid");
        }
        assert!(is_valid_id("01J9.abc:1"));
        assert!(!is_valid_id("line\nbreak"));
        assert!(!is_valid_id(""));
    }

    /// A request subject's tenant is extracted; anything else falls back to `_unknown`.
    #[test]
    fn dead_letter_subject_for_any_request_subject() {
        assert_eq!(tenant_of_request_subject("offpath.req.acme"), Some("acme"));
        assert_eq!(tenant_of_request_subject("offpath.req.acme.x"), None);
        assert_eq!(
            tenant_of_request_subject("offpath.req.acme.interactive"),
            Some("acme")
        );
        assert_eq!(
            tenant_of_request_subject("offpath.req.acme.interactive.x"),
            None
        );
        assert_eq!(tenant_of_request_subject("offpath.req..interactive"), None);
        assert_eq!(tenant_of_request_subject("offpath.reqacme"), None);
        assert_eq!(dlq_subject_for("offpath.req.acme"), "offpath.dlq.acme");
        assert_eq!(dlq_subject_for("elsewhere"), "offpath.dlq._unknown");
    }
}
