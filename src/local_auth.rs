//! `offpath up`'s local nats-server runs with authorization on: a random password per role
//! (drawn at every start), the server's config 0600 in its private working directory, and
//! each child logged in as its own role through its environment (never its command line:
//! `ps` shows that). The transport's credential is pinned to its one verdict consumer.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use offpath_local::private_file::write_private;
use offpath_local::secure::{Credentials, local_authorization};
use offpath_protocol::permissions::Role;

use crate::nats_auth::{NatsAuthArgs, PASSWORD_ENV, USER_ENV};
use crate::supervise::ChildEnv;

/// Login variables a child must not inherit from the launcher: they would log it in as
/// someone else, or (a password file) take precedence over the password it is given.
const NOT_INHERITED: [&str; 2] = ["OFFPATH_NATS_PASSWORD_FILE", "OFFPATH_NATS_CREDS"];

/// The local server's authorization and the logins of `offpath up`'s processes.
#[derive(Debug)]
pub(crate) struct LocalLogins {
    /// The nats-server config text (holds the passwords).
    pub config: String,
    /// The launcher's own topology step.
    pub topology: Credentials,
    /// Every moderator.
    pub moderator: Credentials,
    /// The transport.
    pub transport: Credentials,
    /// The reviewers' console, when it runs.
    pub reviewer: Option<Credentials>,
    /// Other integrations of the transport's tenant (written to [`INTEGRATION_FILE`]).
    pub integration: Credentials,
    /// The transport's tenant.
    pub tenant: String,
    /// The transport's instance, when the launcher chose it (set in its environment).
    pub chosen_instance: Option<String>,
}

/// Draws the passwords for a transport of `tenant` whose instance is `instance` (empty:
/// the launcher chooses one, so the credential can name the consumer), and for the
/// reviewers' console when `reviewer`.
pub(crate) fn logins(tenant: &str, instance: &str, reviewer: bool) -> anyhow::Result<LocalLogins> {
    let chosen_instance = match instance.is_empty() {
        true => Some(format!(
            "up-{}",
            &offpath_local::secure::random_password()?[..12]
        )),
        false => None,
    };
    let transport = Role::Transport {
        tenant: tenant.to_string(),
        instance: Some(
            chosen_instance
                .clone()
                .unwrap_or_else(|| instance.to_string()),
        ),
    };
    let integration = Role::Integration {
        tenant: tenant.to_string(),
    };
    let mut roles = vec![Role::Topology, Role::Moderator, transport, integration];
    if reviewer {
        roles.push(Role::Reviewer);
    }
    let (config, mut credentials) = local_authorization(&roles)?;
    let mut take = || credentials.remove(0).1;
    Ok(LocalLogins {
        config,
        topology: take(),
        moderator: take(),
        transport: take(),
        integration: take(),
        reviewer: reviewer.then(take),
        tenant: tenant.to_string(),
        chosen_instance,
    })
}

impl LocalLogins {
    /// A moderator's environment.
    pub(crate) fn moderator_env(&self) -> ChildEnv {
        login_env(&self.moderator)
    }

    /// The reviewers' console's environment (as the moderator's login when it has none of
    /// its own: not reached, the console runs only with its login).
    pub(crate) fn reviewer_env(&self) -> ChildEnv {
        login_env(self.reviewer.as_ref().unwrap_or(&self.moderator))
    }

    /// The transport's environment (with its instance, when chosen here).
    pub(crate) fn transport_env(&self) -> ChildEnv {
        let mut env = login_env(&self.transport);
        if let Some(instance) = &self.chosen_instance {
            env.0
                .push(("OFFPATH_INSTANCE".into(), Some(instance.clone())));
        }
        env
    }
}

/// The file in the data directory that holds the integration login (0600, written at every
/// start: the passwords are drawn anew).
pub(crate) const INTEGRATION_FILE: &str = "integration.json";

/// Writes the integration login for `urls` to [`INTEGRATION_FILE`] in `dir`, readable by
/// this user only; returns its path. What the README's integration example reads.
pub(crate) fn write_integration_file(
    dir: &Path,
    urls: &[String],
    logins: &LocalLogins,
) -> anyhow::Result<PathBuf> {
    let login = &logins.integration;
    let text = serde_json::json!({
        "url": urls.join(","),
        "user": login.user,
        "password": login.password,
        "inbox_prefix": login.inbox_prefix,
        "tenant": logins.tenant,
    });
    let path = dir.join(INTEGRATION_FILE);
    // A fresh 0600 file renamed over the old one: never a file left 0644 by hand, nor a
    // planted symlink's target.
    std::fs::create_dir_all(dir)
        .and_then(|()| write_private(&path, &format!("{text:#}\n")))
        .with_context(|| format!("writing the integration login {}", path.display()))?;
    Ok(path)
}

fn login_env(credentials: &Credentials) -> ChildEnv {
    let mut env = vec![
        (USER_ENV.to_string(), Some(credentials.user.clone())),
        (PASSWORD_ENV.to_string(), Some(credentials.password.clone())),
    ];
    env.extend(NOT_INHERITED.iter().map(|key| (key.to_string(), None)));
    ChildEnv(env)
}

/// With `--nats-url`, every child logs in as the launcher does: its login flags passed on
/// as environment variables (file paths and a user name, no secret; a password in
/// `OFFPATH_NATS_PASSWORD` is inherited).
pub(crate) fn shared_env(auth: &NatsAuthArgs) -> ChildEnv {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let pairs = [
        (USER_ENV, auth.nats_user.clone()),
        ("OFFPATH_NATS_PASSWORD_FILE", path(&auth.nats_password_file)),
        ("OFFPATH_NATS_CREDS", path(&auth.nats_creds)),
        ("OFFPATH_NATS_TLS_CA", path(&auth.nats_tls_ca)),
        ("OFFPATH_NATS_TLS_CERT", path(&auth.nats_tls_cert)),
        ("OFFPATH_NATS_TLS_KEY", path(&auth.nats_tls_key)),
        (
            "OFFPATH_NATS_TLS_REQUIRED",
            auth.nats_tls_required.then(|| "true".to_string()),
        ),
    ];
    ChildEnv(
        pairs
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key.to_string(), Some(v))))
            .collect(),
    )
}
