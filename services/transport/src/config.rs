//! The transport's settings: flags with `OFFPATH_…` environment fallbacks, grouped by what
//! they govern (identity, limits, outbox, messages, moderation; each group a module).

mod identity;
mod limits;
mod messages;
mod moderation;
mod outbox;
mod room_policy;

use clap::Args;

pub use identity::IdentityConfig;
pub use limits::LimitsConfig;
pub use messages::MessagesConfig;
pub use moderation::ModerationConfig;
pub use outbox::OutboxConfig;
pub(crate) use room_policy::PolicyCache;
pub use room_policy::{Failure, ModerationRule, RoomPolicy, RoomRule};

/// The transport's settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Tenant this gateway serves: the `<tenant>` token of the subjects it publishes and
    /// subscribes to.
    #[arg(long, env = "OFFPATH_TENANT", default_value = defaults::TENANT)]
    pub tenant: String,
    /// Name of this gateway instance: prefixes the message ids it assigns and names its
    /// durable verdict consumer (`transport-<tenant>-<instance>`). Every process needs its own: two
    /// gateways with one name split the verdicts between them. The default is new at every
    /// start (`<host>-<pid>-<random>`); set a stable name per process (e.g. the pod name)
    /// so a restarted gateway resumes its consumer and catches up on verdicts.
    /// (Empty here means that default, chosen when the gateway starts.)
    #[arg(
        long,
        env = "OFFPATH_INSTANCE",
        default_value = "",
        hide_default_value = true
    )]
    pub instance: String,
    /// Who a client is.
    #[command(flatten)]
    pub identity: IdentityConfig,
    /// What clients may hold and send.
    #[command(flatten)]
    pub limits: LimitsConfig,
    /// Requests on their way to JetStream.
    #[command(flatten)]
    pub outbox: OutboxConfig,
    /// Texts, remembered messages and reports.
    #[command(flatten)]
    pub messages: MessagesConfig,
    /// Rooms' moderation.
    #[command(flatten)]
    pub moderation: ModerationConfig,
    /// Settings of the JetStream topology, used only to re-create what is missing (what
    /// exists is never changed: `offpath topology` owns it). Set by the launcher.
    #[arg(skip)]
    pub topology: offpath_protocol::topology::TopologyConfig,
}

/// The defaults: clap's `default_value_t` and [`Config::default`] both read these.
pub(crate) mod defaults;

impl Default for Config {
    /// The documented defaults (the instance name is chosen at start). Reads neither the
    /// command line nor the environment.
    fn default() -> Self {
        Self {
            tenant: defaults::TENANT.to_string(),
            instance: String::new(),
            identity: IdentityConfig::default(),
            limits: LimitsConfig::default(),
            outbox: OutboxConfig::default(),
            messages: MessagesConfig::default(),
            moderation: ModerationConfig::default(),
            topology: offpath_protocol::topology::TopologyConfig::default(),
        }
    }
}

impl Config {
    /// The policy of `room`: the first matching rule, else the default.
    pub(crate) fn policy_of(&self, room: &str) -> RoomPolicy {
        let moderation = &self.moderation;
        moderation
            .room_policy
            .iter()
            .find(|rule| room_policy::matches(&rule.room, room))
            .map_or(moderation.default_room_policy, |rule| rule.policy)
    }

    /// The moderation policy `room`'s requests name: the first matching rule, else none
    /// (the moderators' policy file then chooses by tenant and room).
    pub(crate) fn moderation_policy_of(&self, room: &str) -> Option<&str> {
        self.moderation
            .moderation_policy
            .iter()
            .find(|rule| room_policy::matches(&rule.room, room))
            .map(|rule| rule.policy.as_str())
    }

    /// Every problem that makes the configuration unusable, each a sentence naming its
    /// flags (the launcher prints each and exits with status 64).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        use offpath_protocol::subject::is_valid_token;
        let mut problems = Vec::new();
        if !is_valid_token(&self.tenant) {
            problems.push(format!(
                "--tenant {:?} is not a valid subject token",
                self.tenant
            ));
        }
        if !self.instance.is_empty()
            && (!is_valid_token(&self.instance) || self.instance.len() > 32)
        {
            problems.push(format!(
                "--instance {:?} must be 1-32 bytes of A-Z a-z 0-9 _ : @ = + ~ -",
                self.instance
            ));
        }
        crate::auth::validate_settings(&self.identity, &mut problems);
        self.limits.validate(&mut problems);
        self.messages.validate(&self.limits, &mut problems);
        for (name, value) in [
            ("--outbox-capacity", self.outbox.outbox_capacity),
            ("--outbox-in-flight", self.outbox.outbox_in_flight),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// A name no other gateway has: host name (up to 16 bytes of token characters), process
/// id and 16 random bits (two gateways in one process, as in tests, differ too).
pub(crate) fn default_instance() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let mut host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect();
    if host.is_empty() {
        host.push_str("gateway");
    }
    // RandomState is seeded from the OS's randomness per process and per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    let random = hasher.finish() as u16;
    format!("{host}-{:x}-{random:04x}", std::process::id())
}

/// How the gateway moderates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Moderation {
    /// Deliver at once; requests go through the outbox; verdicts are applied when they come.
    Decoupled,
    /// Comparison mode, not for production: each send awaits a synchronous classify call
    /// before fan-out, as chat servers' spam-checker hooks do.
    Inline,
    /// No moderation at all.
    Off,
}

#[cfg(test)]
mod tests;
