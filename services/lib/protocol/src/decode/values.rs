//! The rules on a request's values, checked once every field has the right type: tokens
//! and ids a subject can carry, senders and reporters without control characters, a deadline
//! not before the send time, and the bounds of a report and of the review context.

use super::{DecodeError, MAX_SENDER_CHARS};
use crate::subject;
use crate::types::{
    ContextMessage, MAX_CONTEXT_MESSAGES, MAX_CONTEXT_TEXT_BYTES, MAX_MENTIONS,
    MAX_REPORT_REASON_CHARS, ModerationRequest, PROTOCOL_VERSION, Report,
};

/// What a tenant, room or policy must be.
const TOKEN_RULE: &str = "1-64 bytes of A-Z a-z 0-9 _ : @ = + ~ - (no '.', '*', '>' or whitespace)";
/// What a message id must be.
const ID_RULE: &str = "must be 1-128 bytes of A-Z a-z 0-9 _ : . @ = + ~ -";
/// What a sender or reporter must be.
const USER_RULE: &str = "must be 1-256 characters with no control characters";

/// Checks the values of a request whose fields all have the right types.
pub fn validate(request: &ModerationRequest) -> Result<(), DecodeError> {
    if request.v != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(request.v.to_string()));
    }
    if !subject::is_valid_id(&request.id) {
        return invalid("id", ID_RULE);
    }
    if !subject::is_valid_token(&request.tenant) {
        return invalid("tenant", TOKEN_RULE);
    }
    if !subject::is_valid_token(&request.room) {
        return invalid("room", TOKEN_RULE);
    }
    if !is_valid_user(&request.sender) {
        return invalid("sender", USER_RULE);
    }
    if request
        .deadline_ms
        .is_some_and(|deadline| deadline < request.sent_at_ms)
    {
        return invalid("deadline_ms", "must not be before sent_at_ms");
    }
    if request
        .policy
        .as_deref()
        .is_some_and(|p| !subject::is_valid_token(p))
    {
        return invalid("policy", TOKEN_RULE);
    }
    if let Some(report) = &request.report {
        validate_report(report)?;
    }
    validate_context(&request.context)?;
    if request
        .account_created_ms
        .is_some_and(|created| created > request.sent_at_ms)
    {
        return invalid("account_created_ms", "must not be after sent_at_ms");
    }
    validate_mentions(&request.mentions)
}

/// Mentions (v1.4): at most 100, each a valid user id, none twice.
fn validate_mentions(mentions: &[String]) -> Result<(), DecodeError> {
    if mentions.len() > MAX_MENTIONS {
        return invalid("mentions", "at most 100 users");
    }
    if mentions.iter().any(|m| !is_valid_user(m)) {
        return invalid("mentions", USER_RULE);
    }
    let distinct: std::collections::HashSet<&String> = mentions.iter().collect();
    if distinct.len() < mentions.len() {
        return invalid("mentions", "each user once");
    }
    Ok(())
}

/// A report's message id, reporter and reason.
fn validate_report(report: &Report) -> Result<(), DecodeError> {
    if !subject::is_valid_id(&report.message_id) {
        return invalid("report.message_id", ID_RULE);
    }
    if !is_valid_user(&report.reporter) {
        return invalid("report.reporter", USER_RULE);
    }
    if report.reason.chars().count() > MAX_REPORT_REASON_CHARS
        || report
            .reason
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return invalid(
            "report.reason",
            "must be at most 500 characters with no control characters but tab and newline",
        );
    }
    Ok(())
}

/// The review context: how many messages, and each one's id, sender and text length.
fn validate_context(context: &[ContextMessage]) -> Result<(), DecodeError> {
    if context.len() > MAX_CONTEXT_MESSAGES {
        return invalid("context", "at most 10 messages");
    }
    for message in context {
        if !subject::is_valid_id(&message.id)
            || !is_valid_user(&message.sender)
            || message.text.len() > MAX_CONTEXT_TEXT_BYTES + '…'.len_utf8()
        {
            return invalid(
                "context",
                "each message needs a valid id and sender and at most 1024 bytes of text",
            );
        }
    }
    Ok(())
}

/// The rejection of `field` for breaking `detail`.
fn invalid(field: &'static str, detail: &str) -> Result<(), DecodeError> {
    Err(DecodeError::InvalidField {
        field,
        detail: detail.to_string(),
    })
}

/// A sender or reporter: 1-256 characters, none of them a control character.
fn is_valid_user(user: &str) -> bool {
    let chars = user.chars().count();
    chars > 0 && chars <= MAX_SENDER_CHARS && !user.chars().any(char::is_control)
}
