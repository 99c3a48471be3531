//! NATS authorization as code: the roles that connect to NATS, the subjects each may
//! publish and subscribe to, and the `nats-server` `authorization { users = [...] }` block
//! that enforces them.
//!
//! Three roles, built from the subject constants of [`crate::subject`] and the streams of
//! [`crate::topology`]:
//!
//! * `transport-<tenant>`: publishes only its tenant's requests (`offpath.req.<tenant>`),
//!   looks at the streams (not `offpath.classify`: see `grants::transport_publish`), and
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

mod authorization;
mod grants;
mod reply;

pub use authorization::{Password, authorization_block};
pub use grants::Permissions;
pub use reply::{ReplyInbox, classify_reply_allowed, classify_reply_inbox};

use crate::subject::{VERDICT_PREFIX, is_valid_token};

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
/// An integration's user name, before its tenant.
const INTEGRATION_USER_PREFIX: &str = "integration-";
/// An integration's inbox prefix, before its tenant.
const INTEGRATION_INBOX_PREFIX: &str = "_INBOX_integration_";
/// A transport's inbox prefix, before its tenant.
const TRANSPORT_INBOX_PREFIX: &str = "_INBOX_transport_";
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

#[cfg(test)]
mod tests;
