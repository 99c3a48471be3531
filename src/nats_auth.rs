//! How a service logs in to NATS: user and password (from a file or the environment, never
//! a command-line value: `ps` shows those), a NATS credentials file, TLS; and
//! `offpath nats-auth`, which prints the deployment's `authorization` block.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use offpath_protocol::permissions::{Password, Role, authorization_block, deployment_roles};

use offpath_ops::cli::Usage;

/// Environment variable holding the NATS password (there is no flag for the value).
pub(crate) const PASSWORD_ENV: &str = "OFFPATH_NATS_PASSWORD";
/// Environment variable holding the NATS user (the `--nats-user` flag's fallback).
pub(crate) const USER_ENV: &str = "OFFPATH_NATS_USER";

/// How to log in to NATS (none of these: anonymously, for a development server).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct NatsAuthArgs {
    /// NATS user name; the password comes from --nats-password-file or the environment
    /// variable OFFPATH_NATS_PASSWORD (never from the command line).
    #[arg(long, env = USER_ENV)]
    pub nats_user: Option<String>,
    /// File whose first line is the NATS password (keep it 0600).
    #[arg(long, env = "OFFPATH_NATS_PASSWORD_FILE")]
    pub nats_password_file: Option<PathBuf>,
    /// NATS credentials file (user JWT and nkey seed, as `nsc` writes them); instead of
    /// --nats-user.
    #[arg(long, env = "OFFPATH_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) that signed the NATS server's certificate; turns TLS on.
    #[arg(long, env = "OFFPATH_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --nats-tls-key.
    #[arg(long, env = "OFFPATH_NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --nats-tls-cert.
    #[arg(long, env = "OFFPATH_NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS (implied by --nats-tls-ca).
    #[arg(long, env = "OFFPATH_NATS_TLS_REQUIRED")]
    pub nats_tls_required: bool,
}

/// A user's password, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl NatsAuthArgs {
    /// Checks the combination and reads the password: a bad one is a usage error (exit 64)
    /// in one line. Returns the user and password to log in with, if any.
    pub(crate) fn check(&self) -> anyhow::Result<Option<(String, Secret)>> {
        let env_password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        let has_password = self.nats_password_file.is_some() || env_password.is_some();
        let usage = |text: &str| Err(Usage(text.into()).into());
        if self.nats_creds.is_some() && self.nats_user.is_some() {
            return usage("--nats-creds and --nats-user are two ways to log in: give one");
        }
        if self.nats_user.is_none() && self.nats_password_file.is_some() {
            return usage("--nats-password-file needs --nats-user");
        }
        if self.nats_tls_cert.is_some() != self.nats_tls_key.is_some() {
            return usage("--nats-tls-cert and --nats-tls-key go together");
        }
        for (flag, path) in [
            ("--nats-creds", &self.nats_creds),
            ("--nats-tls-ca", &self.nats_tls_ca),
            ("--nats-tls-cert", &self.nats_tls_cert),
            ("--nats-tls-key", &self.nats_tls_key),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return usage(&format!("{flag} {}: no such file", path.display()));
            }
        }
        let Some(user) = &self.nats_user else {
            return Ok(None);
        };
        if !has_password {
            return usage(&format!(
                "--nats-user needs a password: --nats-password-file or {PASSWORD_ENV}"
            ));
        }
        let password = match &self.nats_password_file {
            Some(path) => read_password(path)?,
            None => env_password.unwrap_or_default(),
        };
        Ok(Some((user.clone(), Secret(password))))
    }

    /// Connect options for a client called `name` with inbox prefix `inbox` (the one its
    /// role's permissions allow).
    pub(crate) async fn options(
        &self,
        name: &str,
        inbox: &str,
    ) -> anyhow::Result<async_nats::ConnectOptions> {
        let login = self.check()?;
        let mut options = match &self.nats_creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .with_context(|| format!("reading --nats-creds {}", path.display()))?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some((user, Secret(password))) = login {
            options = options.user_and_password(user, password);
        }
        if let Some(ca) = &self.nats_tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let tls = self.nats_tls_required || self.nats_tls_ca.is_some();
        Ok(options
            .require_tls(tls)
            .name(name)
            .custom_inbox_prefix(inbox))
    }
}

/// The first line of `path`; an unreadable or empty file is a usage error.
fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Usage(format!("--nats-password-file {}: {err}", path.display())))?;
    let password = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string();
    if password.is_empty() {
        let problem = format!("--nats-password-file {}: empty", path.display());
        return Err(Usage(problem).into());
    }
    Ok(password)
}

/// Options of `offpath nats-auth`.
#[derive(Debug, Args)]
pub(crate) struct NatsAuthCommand {
    /// A tenant whose transports share a user `transport-<tenant>` that may use any
    /// verdict consumer by name (repeat, or separate with commas). Refused beside any other
    /// tenant's transport (it could read and re-point that tenant's verdict consumers): only
    /// for a deployment with one tenant.
    #[arg(long, env = "OFFPATH_NATS_AUTH_TENANTS", value_delimiter = ',')]
    pub tenant: Vec<String>,
    /// `<tenant>=<instance>`: a user `transport-<tenant>-<instance>` for that one gateway
    /// (`--tenant T --instance I`), allowed only its own verdict consumer (repeat, or
    /// separate with commas). Safer than --tenant: see docs/security.md.
    #[arg(long, env = "OFFPATH_NATS_AUTH_TRANSPORTS", value_delimiter = ',')]
    pub transport: Vec<String>,
    /// A tenant whose other integrations (a forum, a bot) get a user
    /// `integration-<tenant>`: publishes that tenant's requests, reads its verdicts, calls
    /// `offpath.classify` (repeat, or separate with commas; docs/protocol.md, "Integrating").
    #[arg(long, env = "OFFPATH_NATS_AUTH_INTEGRATIONS", value_delimiter = ',')]
    pub integration: Vec<String>,
}

/// The deployment's `authorization` block: passwords are `$OFFPATH_NATS_PASSWORD_<USER>`
/// references that nats-server resolves from its environment at start.
pub(crate) fn deployment_block(command: &NatsAuthCommand) -> anyhow::Result<String> {
    if command.tenant.is_empty() && command.transport.is_empty() && command.integration.is_empty() {
        return Err(
            Usage("give at least one --tenant, --transport or --integration".into()).into(),
        );
    }
    let pinned = command
        .transport
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((tenant, instance)) => Ok((tenant.to_string(), instance.to_string())),
            None => Err(Usage(format!(
                "--transport {pair:?}: expected <tenant>=<instance>"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let users: Vec<(Role, Password)> =
        deployment_roles(&command.tenant, &pinned, &command.integration)
            .into_iter()
            .map(|role| (role, Password::FromEnv))
            .collect();
    let block = authorization_block(&users).map_err(|err| Usage(err.to_string()))?;
    let flags: String = (command.tenant.iter().map(|t| format!(" --tenant {t}")))
        .chain(
            command
                .transport
                .iter()
                .map(|t| format!(" --transport {t}")),
        )
        .chain(
            command
                .integration
                .iter()
                .map(|t| format!(" --integration {t}")),
        )
        .collect();
    Ok(format!(
        "# Generated by `offpath nats-auth{flags}`: do not edit by hand.\n{block}"
    ))
}

/// `offpath nats-auth`: prints the block on stdout.
pub(crate) fn print(command: &NatsAuthCommand) -> anyhow::Result<()> {
    print!("{}", deployment_block(command)?);
    Ok(())
}
