//! NATS authorization as code: the roles that connect to NATS, the subjects each may
//! publish and subscribe to, and the `nats-server` `authorization { users = [...] }` block
//! that enforces them.
//!
//! Three roles, built from the subject constants of [`crate::subject`] and the streams of
//! [`crate::topology`]:
//!
//! * `transport-<tenant>`: publishes only its tenant's requests (`offpath.req.<tenant>`),
//!   looks at the streams (not `offpath.classify`: see [`transport_publish`]), and
//!   creates, reads and acks its own verdict consumer on `VERDICTS`. The consumer-create
//!   subject carries the filter (`$JS.API.CONSUMER.CREATE.VERDICTS.<name>.<filter>`, the
//!   form async-nats 0.51 always sends), so a transport can only create a consumer of its
//!   tenant's verdicts; the server refuses a body whose filter differs from the subject's.
//! * `moderator`: pulls from and acks the `MODERATION/moderator` consumer, publishes
//!   verdicts and dead letters, serves `offpath.classify` and the `$SRV` discovery subjects
//!   (replies through `allow_responses`).
//! * `topology`: the whole JetStream API (`$JS.API.>`): the only role that may create,
//!   update or delete streams and consumers.
//! * `integration-<tenant>`: another integration of one tenant (a forum, a bot, a comment
//!   system): calls `offpath.classify`, nothing else. A moderator answers a call only on an
//!   anonymous inbox (`_INBOX.…`, a deployment without authorization) or on the inbox of
//!   the request's own tenant ([`classify_reply_allowed`]): the caller chooses the reply
//!   subject and the moderator answers with its own rights.
//!
//! Every role receives replies on its own inbox prefix ([`Role::inbox_prefix`]) and may
//! subscribe to nothing else of the kind: a shared `_INBOX.>` would let a transport read the
//! moderators' pull replies, i.e. every tenant's text.

use std::fmt::Write as _;

use crate::subject::{
    AUDIT_PREFIX, AUDIT_STREAM, CLASSIFY_SUBJECT, DLQ_PREFIX, DLQ_STREAM, INTERACTIVE_LANE,
    INTERACTIVE_STREAM, MODERATION_STREAM, MODERATOR_CONSUMER, POLICY_BUCKET, POLICY_KEY,
    REQUEST_PREFIX, REVIEW_PREFIX, REVIEW_STREAM, VERDICT_PREFIX, VERDICTS_STREAM, is_valid_token,
};

/// Who connects to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A chat gateway of one tenant. With `instance`, the credential is pinned to that one
    /// gateway's verdict consumer (`transport-<tenant>-<instance>`); without, it may use any
    /// consumer of `VERDICTS` by name (nats-server wildcards match whole tokens only, and a
    /// consumer name is one token).
    Transport {
        /// The tenant token.
        tenant: String,
        /// The gateway instance, when the credential is for one gateway only.
        instance: Option<String>,
    },
    /// An inference worker (all moderators share one credential).
    Moderator,
    /// `offpath topology` (and `offpath up`'s topology step): manages streams and consumers.
    Topology,
    /// `offpath review`, the reviewers' console: reads the review queue and the audit
    /// trail, publishes human verdicts and audit entries.
    Reviewer,
    /// Another integration of one tenant: `offpath.classify` only.
    Integration {
        /// The tenant token.
        tenant: String,
    },
}

/// Why a set of roles cannot be turned into an authorization block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionsError {
    /// A tenant or instance is not a valid subject token.
    #[error("{0:?} is not a valid tenant or instance token (1-64 of A-Z a-z 0-9 _ : @ = + ~ -)")]
    InvalidToken(String),
    /// Two roles would have the same user name or password variable.
    #[error("two roles share the user or password variable {0:?}")]
    Duplicate(String),
    /// A shared (unpinned) transport user beside another tenant's transport: it may use
    /// every `VERDICTS` consumer by name (a name is one subject token, and permissions
    /// match whole tokens), so it could read, ack and re-point the other tenant's consumers.
    #[error(
        "transport-{tenant} (a user shared by every gateway of {tenant}) could use {other}'s \
         verdict consumers: with more than one tenant, pin each gateway to its own user \
         (--transport {tenant}=<instance>)"
    )]
    SharedBesideOtherTenants {
        /// The tenant of the shared user.
        tenant: String,
        /// Another tenant of the deployment.
        other: String,
    },
}

/// The subjects one role may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to (everything else is refused).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to (everything else is refused).
    pub subscribe: Vec<String>,
    /// Whether it may publish once to the reply subject of each message it receives.
    pub allow_responses: bool,
}

/// The durable verdict consumer of a transport: `transport-<tenant>-<instance>` (the tenant
/// in the name keeps two tenants' gateways with one instance name apart).
pub fn transport_consumer(tenant: &str, instance: &str) -> String {
    format!("transport-{tenant}-{instance}")
}

/// The filter of a transport's verdict consumer, in the stream's own shape
/// (`offpath.verdict.<tenant>.*`; nats-server 2.9 refuses `offpath.verdict.<tenant>.>`).
pub fn transport_filter(tenant: &str) -> String {
    format!("{VERDICT_PREFIX}.{tenant}.*")
}

impl Role {
    /// The NATS user name: `transport-<tenant>` (`transport-<tenant>-<instance>` when
    /// pinned to an instance), `moderator` or `topology`.
    pub fn user(&self) -> String {
        match self {
            Role::Transport {
                tenant,
                instance: None,
            } => format!("transport-{tenant}"),
            Role::Transport {
                tenant,
                instance: Some(instance),
            } => transport_consumer(tenant, instance),
            Role::Moderator => "moderator".into(),
            Role::Topology => "topology".into(),
            Role::Reviewer => "reviewer".into(),
            Role::Integration { tenant } => format!("{INTEGRATION_USER_PREFIX}{tenant}"),
        }
    }

    /// The inbox prefix this role's client must use
    /// (`ConnectOptions::custom_inbox_prefix`): `_INBOX_transport_<tenant>` (every
    /// instance of a tenant alike: a gateway knows its tenant, not its credential's
    /// name), `_INBOX_integration_<tenant>`, `_INBOX_moderator`, `_INBOX_topology`.
    pub fn inbox_prefix(&self) -> String {
        match self {
            Role::Transport { tenant, .. } => format!("{TRANSPORT_INBOX_PREFIX}{tenant}"),
            Role::Integration { tenant } => format!("{INTEGRATION_INBOX_PREFIX}{tenant}"),
            other => format!("_INBOX_{}", other.user()),
        }
    }

    /// The environment variable the deployment config reads this role's password from:
    /// `OFFPATH_NATS_PASSWORD_<USER>`, upper case, every other character as `_`.
    pub fn password_variable(&self) -> String {
        let user: String = self
            .user()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("OFFPATH_NATS_PASSWORD_{user}")
    }

    /// What this role may publish and subscribe to.
    pub fn permissions(&self) -> Permissions {
        let inbox = format!("{}.>", self.inbox_prefix());
        match self {
            Role::Transport { tenant, instance } => Permissions {
                publish: transport_publish(tenant, instance.as_deref()),
                subscribe: vec![inbox],
                allow_responses: false,
            },
            Role::Moderator => {
                let mut publish = vec![
                    format!("{VERDICT_PREFIX}.>"),
                    format!("{DLQ_PREFIX}.>"),
                    format!("{REVIEW_PREFIX}.>"),
                ];
                publish.extend(topology_lookups());
                for stream in [MODERATION_STREAM, INTERACTIVE_STREAM] {
                    publish.extend([
                        format!("{API}.CONSUMER.MSG.NEXT.{stream}.{MODERATOR_CONSUMER}"),
                        format!("$JS.ACK.{stream}.{MODERATOR_CONSUMER}.>"),
                    ]);
                }
                publish.extend(policy_reads());
                Permissions {
                    publish,
                    subscribe: vec![
                        inbox,
                        CLASSIFY_SUBJECT.into(),
                        "$SRV.>".into(),
                        policy_key_subject(),
                    ],
                    allow_responses: true,
                }
            }
            Role::Topology => Permissions {
                // The JetStream API, and writing the policy bucket (`offpath policy push`).
                publish: vec![format!("{API}.>"), format!("$KV.{POLICY_BUCKET}.>")],
                subscribe: vec![inbox],
                allow_responses: false,
            },
            // Verdicts as they are published: a sender's recent blocks beside their items.
            Role::Reviewer => Permissions {
                publish: reviewer_publish(),
                subscribe: vec![inbox, format!("{VERDICT_PREFIX}.>")],
                allow_responses: false,
            },
            // `offpath.classify` only, answered on its own inbox. Not the tenant's request
            // and verdict subjects: they are the chat gateway's, which trusts what arrives
            // there (a review found that with them an integration could have real chat
            // messages retracted by publishing requests with their ids, forge "verified"
            // reports in a user's name, read every chat message's verdict with reviewers'
            // notes, and have the server publish its acknowledgements anywhere). A classify
            // verdict goes to the caller alone: nothing is stored, queued or published.
            Role::Integration { tenant: _ } => Permissions {
                publish: vec![CLASSIFY_SUBJECT.into()],
                subscribe: vec![inbox],
                allow_responses: false,
            },
        }
    }

    fn check(&self) -> Result<(), PermissionsError> {
        let tokens: Vec<&String> = match self {
            Role::Transport { tenant, instance } => {
                std::iter::once(tenant).chain(instance).collect()
            }
            Role::Integration { tenant } => vec![tenant],
            _ => Vec::new(),
        };
        for token in tokens {
            if !is_valid_token(token) {
                return Err(PermissionsError::InvalidToken(token.clone()));
            }
        }
        Ok(())
    }
}

/// The JetStream API's subject prefix.
const API: &str = "$JS.API";
/// An integration's user name, before its tenant.
const INTEGRATION_USER_PREFIX: &str = "integration-";
/// An integration's inbox prefix, before its tenant.
const INTEGRATION_INBOX_PREFIX: &str = "_INBOX_integration_";
/// A transport's inbox prefix, before its tenant.
const TRANSPORT_INBOX_PREFIX: &str = "_INBOX_transport_";

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

/// What a service looks up to see whether the topology is in place ([`crate::topology::ensure`]):
/// the four streams' info and the moderators' consumers' info.
fn topology_lookups() -> Vec<String> {
    let streams = [
        MODERATION_STREAM,
        INTERACTIVE_STREAM,
        VERDICTS_STREAM,
        DLQ_STREAM,
        REVIEW_STREAM,
        AUDIT_STREAM,
    ];
    let mut subjects: Vec<String> = streams
        .iter()
        .map(|s| format!("{API}.STREAM.INFO.{s}"))
        .collect();
    for stream in [MODERATION_STREAM, INTERACTIVE_STREAM] {
        subjects.push(format!("{API}.CONSUMER.INFO.{stream}.{MODERATOR_CONSUMER}"));
    }
    subjects
}

/// What following the policy bucket takes (a moderator reads it, never writes it): the
/// bucket stream's info and direct gets (the key's last value, and each stored value by
/// sequence: start-up looks for the newest validly signed one), published; the key's
/// subject, subscribed. No consumer: creating one would let the creator name any delivery
/// subject, which nats-server does not check against its publish permissions.
fn policy_reads() -> Vec<String> {
    let stream = format!("KV_{POLICY_BUCKET}");
    vec![
        format!("{API}.STREAM.INFO.{stream}"),
        format!("{API}.DIRECT.GET.{stream}"),
        format!("{API}.DIRECT.GET.{stream}.{}", policy_key_subject()),
    ]
}

/// What the review console publishes: human verdicts (any tenant's, as moderators do) and
/// audit entries; and reading `REVIEW` and `AUDIT` with ordered consumers of its own (pull
/// consumers answer on the caller's inbox; their names are chosen at random).
fn reviewer_publish() -> Vec<String> {
    let mut publish = vec![format!("{VERDICT_PREFIX}.>"), format!("{AUDIT_PREFIX}.>")];
    for stream in [REVIEW_STREAM, AUDIT_STREAM] {
        publish.extend([
            format!("{API}.STREAM.INFO.{stream}"),
            format!("{API}.CONSUMER.CREATE.{stream}"),
            format!("{API}.CONSUMER.CREATE.{stream}.>"),
            format!("{API}.CONSUMER.INFO.{stream}.*"),
            format!("{API}.CONSUMER.DELETE.{stream}.*"),
            format!("{API}.CONSUMER.MSG.NEXT.{stream}.*"),
        ]);
    }
    publish
}

/// The subject of the policy file in its bucket: `$KV.offpath-policies.policies`.
fn policy_key_subject() -> String {
    format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}")
}

/// A transport's publish permissions: its tenant's requests, the topology look-ups, and its verdict consumer (any name, or exactly its own when pinned),
/// created only with its tenant's filter in the subject.
fn transport_publish(tenant: &str, instance: Option<&str>) -> Vec<String> {
    let consumer = instance.map_or_else(|| "*".to_string(), |i| transport_consumer(tenant, i));
    // Not `offpath.classify`: its reply subject is the caller's to choose, and a moderator
    // answering it publishes with the moderator's rights (verdict and dead-letter subjects
    // included). The inline mode it serves is a benchmark's, run without authorization.
    let mut publish = vec![
        format!("{REQUEST_PREFIX}.{tenant}"),
        format!("{REQUEST_PREFIX}.{tenant}.{INTERACTIVE_LANE}"),
    ];
    publish.extend(topology_lookups());
    publish.extend([
        format!("{API}.CONSUMER.INFO.{VERDICTS_STREAM}.{consumer}"),
        format!(
            "{API}.CONSUMER.CREATE.{VERDICTS_STREAM}.{consumer}.{}",
            transport_filter(tenant)
        ),
        format!("{API}.CONSUMER.MSG.NEXT.{VERDICTS_STREAM}.{consumer}"),
        format!("$JS.ACK.{VERDICTS_STREAM}.{consumer}.>"),
    ]);
    publish
}

/// How a user's password appears in the generated config.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// The password itself (the local server of `offpath up`; the file is 0600).
    Literal(String),
    /// A reference to the role's environment variable ([`Role::password_variable`]),
    /// resolved by nats-server at start: the deployment file holds no secret, and a missing
    /// variable stops the server instead of leaving the user open.
    FromEnv,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Password::Literal(_) => f.write_str("Literal(<redacted>)"),
            Password::FromEnv => f.write_str("FromEnv"),
        }
    }
}

/// The roles of a deployment: the topology user, the moderators, the review console, one
/// transport user per
/// tenant of `tenants` (any instance of it) and per `(tenant, instance)` of `pinned` (that
/// one gateway and its one verdict consumer), and an integration user per tenant of
/// `integrations`.
pub fn deployment_roles(
    tenants: &[String],
    pinned: &[(String, String)],
    integrations: &[String],
) -> Vec<Role> {
    let mut roles = vec![Role::Topology, Role::Moderator, Role::Reviewer];
    roles.extend(tenants.iter().map(|tenant| Role::Transport {
        tenant: tenant.clone(),
        instance: None,
    }));
    roles.extend(pinned.iter().map(|(tenant, instance)| Role::Transport {
        tenant: tenant.clone(),
        instance: Some(instance.clone()),
    }));
    roles.extend(integrations.iter().map(|tenant| Role::Integration {
        tenant: tenant.clone(),
    }));
    roles
}

/// The `authorization { users = [...] }` block of a nats-server config for `users`. No
/// `no_auth_user`: a client without credentials is refused.
pub fn authorization_block(users: &[(Role, Password)]) -> Result<String, PermissionsError> {
    let mut seen = std::collections::BTreeSet::new();
    for (role, _) in users {
        role.check()?;
        for key in [role.user(), role.password_variable()] {
            if !seen.insert(key.clone()) {
                return Err(PermissionsError::Duplicate(key));
            }
        }
    }
    for (role, _) in users {
        let Role::Transport {
            tenant,
            instance: None,
        } = role
        else {
            continue;
        };
        let other = users.iter().find_map(|(other, _)| match other {
            Role::Transport { tenant: t, .. } if t != tenant => Some(t.clone()),
            _ => None,
        });
        if let Some(other) = other {
            return Err(PermissionsError::SharedBesideOtherTenants {
                tenant: tenant.clone(),
                other,
            });
        }
    }
    let mut out = String::from("authorization {\n  users = [\n");
    for (role, password) in users {
        let password = match password {
            Password::Literal(secret) => quote(secret),
            Password::FromEnv => format!("${}", role.password_variable()),
        };
        let p = role.permissions();
        let _ = write!(
            out,
            "    {{\n      user: {user}\n      password: {password}\n      permissions: {{\n        \
             publish: {{ allow: {publish} }}\n        subscribe: {{ allow: {subscribe} }}\n",
            user = quote(&role.user()),
            publish = list(&p.publish),
            subscribe = list(&p.subscribe),
        );
        if p.allow_responses {
            out.push_str("        allow_responses: true\n");
        }
        out.push_str("      }\n    }\n");
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

/// A double-quoted config string (no variable expansion inside quotes).
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(subjects: &[String]) -> String {
    let items: Vec<String> = subjects.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests;
