//! Who a client is: token keys and claims, the development identity, and which pages and hosts may open a socket.

use super::defaults;
use clap::Args;
use std::path::PathBuf;

/// Who a client is: token keys and claims, the development identity, and which pages and hosts may open a socket.
#[derive(Debug, Clone, Args)]
pub struct IdentityConfig {
    /// Trust `?user=<name>` as the user's identity: anyone can connect as anyone. For local
    /// development only (`offpath up` sets it unless given token keys); logged as a warning
    /// at start. Without it the gateway needs token keys.
    #[arg(long, env = "OFFPATH_INSECURE_DEV_IDENTITY")]
    pub insecure_dev_identity: bool,
    /// Allow `--insecure-dev-identity` on a listener that is not a loopback address (the
    /// gateway refuses to start otherwise): everyone who can reach the port can then be
    /// anyone. For a throwaway network you control, never a shared one.
    #[arg(long, env = "OFFPATH_INSECURE_DEV_IDENTITY_ON_NETWORK")]
    pub insecure_dev_identity_on_network: bool,
    /// Files each holding an HS256 secret that verifies client tokens (at least 32 bytes;
    /// trailing whitespace ignored); comma-separated, several at once while rotating. The
    /// secret may also come in the `OFFPATH_TOKEN_HS256_SECRET` variable (never a flag:
    /// `ps` shows flags).
    #[arg(long, env = "OFFPATH_TOKEN_HS256_FILE", value_delimiter = ',')]
    pub token_hs256_file: Vec<PathBuf>,
    /// PEM files each holding a public key that verifies client tokens: Ed25519 (EdDSA) or
    /// RSA (RS256); comma-separated, several at once while rotating.
    #[arg(long, env = "OFFPATH_TOKEN_PUBLIC_KEY_FILE", value_delimiter = ',')]
    pub token_public_key_file: Vec<PathBuf>,
    /// The `iss` a client token must carry; unchecked when unset.
    #[arg(long, env = "OFFPATH_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,
    /// The `aud` a client token must carry (one of its values). Required with
    /// `--token-public-key-file` (an identity provider's key signs tokens for other apps
    /// too); optional with HS256 secrets, which should then be dedicated to this gateway.
    #[arg(long, env = "OFFPATH_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// Longest a session may stay open, in seconds, whatever its token's `exp` says: the
    /// connection is closed at the earlier of the two. Unset: the token's `exp` alone.
    #[arg(long, env = "OFFPATH_TOKEN_MAX_LIFETIME_SECS")]
    pub token_max_lifetime_secs: Option<u64>,
    /// Clock skew allowed when checking a token's `exp` and `nbf`, in seconds; a connection
    /// is closed this long after its token's `exp`.
    #[arg(long, env = "OFFPATH_TOKEN_LEEWAY_SECS", default_value_t = defaults::TOKEN_LEEWAY_SECS)]
    pub token_leeway_secs: u64,
    /// Web pages allowed to open a socket, as browsers send them in `Origin`
    /// (`https://chat.example.com`), comma-separated. Empty: only pages of the host the
    /// request came to (same-origin). Requests without `Origin` (not from a browser page)
    /// are not affected.
    #[arg(long, env = "OFFPATH_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Host names (no port) this gateway is reached by, comma-separated: with an empty
    /// `--allowed-origins`, a page is same-origin only when the request's `Host` is one of
    /// these or a loopback name (`localhost`, `127.x`, `[::1]`), so a DNS-rebinding page
    /// (`rebind.evil` resolving to this gateway) is refused.
    #[arg(long, env = "OFFPATH_PUBLIC_HOSTS", value_delimiter = ',')]
    pub public_hosts: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            insecure_dev_identity: false,
            insecure_dev_identity_on_network: false,
            token_hs256_file: Vec::new(),
            token_public_key_file: Vec::new(),
            token_issuer: None,
            token_audience: None,
            token_max_lifetime_secs: None,
            token_leeway_secs: defaults::TOKEN_LEEWAY_SECS,
            allowed_origins: Vec::new(),
            public_hosts: Vec::new(),
        }
    }
}
