//! Where a moderator may answer an `offpath.classify` call: the caller chooses the reply
//! subject, and the moderator answers with its own rights.

use super::{INTEGRATION_INBOX_PREFIX, TRANSPORT_INBOX_PREFIX};
use crate::subject::is_valid_token;

/// Whose inbox the reply subject of an `offpath.classify` call is, when it is one a
/// moderator may answer on ([`classify_reply_allowed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyInbox<'a> {
    /// `_INBOX.…`: nobody may subscribe to it under authorization, so only a deployment
    /// without it reads an answer there.
    Anonymous,
    /// `_INBOX_integration_<tenant>.…` or `_INBOX_transport_<tenant>.…`.
    Tenant(&'a str),
}

/// The owner of `reply` if it is an anonymous inbox or a tenant's integration or transport
/// inbox (with at least one non-empty token after the prefix); `None` for anything else.
pub fn classify_reply_inbox(reply: &str) -> Option<ReplyInbox<'_>> {
    let (first, rest) = reply.split_once('.')?;
    if rest.is_empty() || rest.split('.').any(str::is_empty) {
        return None;
    }
    if first == "_INBOX" {
        return Some(ReplyInbox::Anonymous);
    }
    [INTEGRATION_INBOX_PREFIX, TRANSPORT_INBOX_PREFIX]
        .iter()
        .find_map(|prefix| first.strip_prefix(prefix))
        .filter(|tenant| is_valid_token(tenant))
        .map(ReplyInbox::Tenant)
}

/// Whether a moderator may answer an `offpath.classify` call for `tenant` on `reply`: an
/// anonymous inbox, or an inbox of `tenant`'s own integration or transport. Never anything
/// else: the moderator may publish verdicts, dead letters, review entries and
/// acknowledgements, and the caller chose where the answer goes; nor another tenant's or
/// another role's inbox, so a call is judged under the policy of the tenant that reads it.
pub fn classify_reply_allowed(reply: &str, tenant: &str) -> bool {
    match classify_reply_inbox(reply) {
        Some(ReplyInbox::Anonymous) => true,
        Some(ReplyInbox::Tenant(owner)) => owner == tenant,
        None => false,
    }
}
