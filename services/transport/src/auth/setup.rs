//! Choosing the authenticator at start: signed tokens when keys are configured, the
//! development identity only when asked for by name, nothing otherwise.

use std::sync::Arc;
use std::time::Duration;

use super::{Authenticator, KeyError, QueryUser, Tokens};
use crate::{Config, IdentityConfig};

/// The environment variable an HS256 secret may be given in (the secret itself: a flag
/// value would show in `ps`). The files of `--token-hs256-file` are the other way.
pub const SECRET_ENV: &str = "OFFPATH_TOKEN_HS256_SECRET";

/// Most clock skew `--token-leeway-secs` may allow: more would keep expired tokens alive.
const MAX_TOKEN_LEEWAY_SECS: u64 = 300;

/// Flags and variables that configure token keys: `offpath up` runs its transport with the
/// development identity unless one of them is given.
const KEY_FLAGS: &[&str] = &["--token-hs256-file", "--token-public-key-file"];
const KEY_ENVS: &[&str] = &[
    SECRET_ENV,
    "OFFPATH_TOKEN_HS256_FILE",
    "OFFPATH_TOKEN_PUBLIC_KEY_FILE",
];

/// Why no authenticator could be set up (a usage error: the launcher exits with 64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Neither token keys nor the development identity.
    #[error(
        "no client identity configured: give token keys (--token-hs256-file, \
         --token-public-key-file or {SECRET_ENV}) or, for local development only, \
         --insecure-dev-identity"
    )]
    Unconfigured,
    /// Both: which one is meant is not clear.
    #[error("--insecure-dev-identity and token keys are both given: choose one")]
    Both,
    /// Public keys without `--token-audience`: a key of an identity provider signs tokens
    /// for every app it serves, and each would open every room here.
    #[error(
        "--token-public-key-file needs --token-audience: without it a token the same \
         identity provider issued for another app is accepted here"
    )]
    AudienceRequired,
    /// A key could not be used.
    #[error("token key {0}")]
    Key(#[from] KeyError),
    /// The development identity on a listener other people can reach.
    #[error(
        "--insecure-dev-identity on {0}, not a loopback address: anyone who reaches it can \
         be anyone; listen on 127.0.0.1, configure tokens, or add \
         --insecure-dev-identity-on-network"
    )]
    DevIdentityOnNetwork(std::net::SocketAddr),
}

/// The authenticator `config` asks for. `env_secret` is the value of [`SECRET_ENV`] (passed
/// in rather than read here, so tests do not depend on the environment).
pub fn authenticator(
    config: &Config,
    env_secret: Option<&str>,
) -> Result<Arc<dyn Authenticator>, IdentityError> {
    let config = &config.identity;
    if !config.token_public_key_file.is_empty() && config.token_audience.is_none() {
        return Err(IdentityError::AudienceRequired);
    }
    let tokens = load_keys(config, env_secret)?;
    if !tokens.is_empty() && config.token_audience.is_none() {
        tracing::warn!(
            "no --token-audience: any token signed with the HS256 secret opens this gateway; \
             keep the secret dedicated to it"
        );
    }
    match (tokens.is_empty(), config.insecure_dev_identity) {
        (false, false) => Ok(Arc::new(tokens)),
        (true, true) => Ok(Arc::new(QueryUser)),
        (true, false) => Err(IdentityError::Unconfigured),
        (false, true) => Err(IdentityError::Both),
    }
}

fn load_keys(config: &IdentityConfig, env_secret: Option<&str>) -> Result<Tokens, IdentityError> {
    let mut tokens = Tokens::new(
        config.token_issuer.clone(),
        config.token_audience.clone(),
        Duration::from_secs(config.token_leeway_secs),
    );
    if let Some(max) = config.token_max_lifetime_secs {
        tokens = tokens.max_lifetime(Duration::from_secs(max));
    }
    if let Some(secret) = env_secret.filter(|s| !s.is_empty()) {
        tokens = tokens.hs256_secret(secret.as_bytes(), SECRET_ENV)?;
    }
    for path in &config.token_hs256_file {
        let bytes = read(path)?;
        // `echo secret > file` adds a newline that is not part of the secret.
        let secret = bytes.trim_ascii_end();
        tokens = tokens.hs256_secret(secret, &path.display().to_string())?;
    }
    for path in &config.token_public_key_file {
        let bytes = read(path)?;
        tokens = tokens.public_key_pem(&bytes, &path.display().to_string())?;
    }
    Ok(tokens)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|err| KeyError::Read {
        location: path.display().to_string(),
        detail: err.to_string(),
    })
}

/// Refuses the development identity (`kind`, an [`Authenticator::kind`]) on a public
/// listener at `addr` that is not a loopback address, unless
/// `--insecure-dev-identity-on-network` says so. `run` checks it; a launcher may check it
/// before starting anything.
pub fn check_listener(
    config: &Config,
    kind: &str,
    addr: std::net::SocketAddr,
) -> Result<(), IdentityError> {
    let config = &config.identity;
    let exposed = kind == QueryUser::KIND && !addr.ip().to_canonical().is_loopback();
    if exposed && !config.insecure_dev_identity_on_network {
        return Err(IdentityError::DevIdentityOnNetwork(addr));
    }
    if exposed {
        tracing::warn!(%addr, "INSECURE DEVELOPMENT IDENTITY ON A NETWORK ADDRESS");
    }
    Ok(())
}

/// Whether a transport started with `flags` (and this process's environment, which a child
/// inherits) is given token keys: `offpath up` passes `--insecure-dev-identity` otherwise.
pub fn wants_tokens(flags: &[String]) -> bool {
    let flagged = flags
        .iter()
        .any(|flag| KEY_FLAGS.iter().any(|name| flag.starts_with(name)));
    flagged || KEY_ENVS.iter().any(|name| std::env::var_os(name).is_some())
}

/// Problems with the identity settings, added to `problems` (part of
/// [`Config::validate`]; whether any identity is configured at all is [`authenticator`]'s
/// question: a secret may come from the environment).
pub(crate) fn validate_settings(config: &IdentityConfig, problems: &mut Vec<String>) {
    if config.insecure_dev_identity_on_network && !config.insecure_dev_identity {
        problems.push("--insecure-dev-identity-on-network needs --insecure-dev-identity".into());
    }
    if config.token_max_lifetime_secs == Some(0) {
        problems.push("--token-max-lifetime-secs must be at least 1".into());
    }
    if config.token_leeway_secs > MAX_TOKEN_LEEWAY_SECS {
        problems.push(format!(
            "--token-leeway-secs must be at most {MAX_TOKEN_LEEWAY_SECS}"
        ));
    }
    for (name, value) in [
        ("--token-issuer", &config.token_issuer),
        ("--token-audience", &config.token_audience),
    ] {
        if value.as_deref().is_some_and(str::is_empty) {
            problems.push(format!("{name} is empty"));
        }
    }
    problems.extend(
        config
            .allowed_origins
            .iter()
            .filter_map(|entry| super::origin::invalid_entry(entry)),
    );
    problems.extend(
        config
            .public_hosts
            .iter()
            .filter_map(|entry| super::origin::invalid_host(entry)),
    );
}
