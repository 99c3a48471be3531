//! Who is connecting, and from which page. The gateway asks an [`Authenticator`] before the
//! websocket upgrade: [`Tokens`] verifies a signed token (JWT: HS256 shared secrets, EdDSA
//! or RS256 public keys) and is what a deployment runs; [`QueryUser`] trusts `?user=<name>`
//! and runs only behind `--insecure-dev-identity`. [`origin`] decides which web pages may
//! open a socket at all. The rules are in `docs/security.md`.

pub(crate) mod origin;
mod pem;
mod session;
mod setup;
mod token;

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderMap, Uri};

pub use session::RoomGrant;
pub(crate) use session::{TOKEN_EXPIRED, check_join, close_at_expiry};
pub(crate) use setup::validate_settings;
pub use setup::{IdentityError, SECRET_ENV, authenticator, check_listener, wants_tokens};
pub use token::{KeyError, Tokens};

/// Who a connection is, as its authenticator established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name other members see as the sender (1-64 bytes of
    /// `A-Z a-z 0-9 _ : @ = + ~ -`).
    pub user: Arc<str>,
    /// The rooms this connection may join.
    pub rooms: RoomGrant,
    /// When the credential stops being valid: the gateway closes the connection then
    /// (close code 1008, reason `token_expired`). `None` for the development identity.
    pub expires_at: Option<SystemTime>,
    /// When the account was created, ms since the epoch, as the token vouches
    /// (`account_created_at`); the gateway passes it on in each request (contract v1.4).
    pub account_created_ms: Option<u64>,
}

impl Identity {
    /// `user`, any room, no expiry: the development identity.
    pub fn unrestricted(user: Arc<str>) -> Self {
        Self {
            user,
            rooms: RoomGrant::any(),
            expires_at: None,
            account_created_ms: None,
        }
    }
}

/// Why a connection was refused before the websocket upgrade (HTTP 401). The reason is the
/// `reason` label of `offpath_transport_auth_refusals_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No identity in the request.
    #[error("no credentials: send a token (Authorization: Bearer, or ?access_token=)")]
    Missing,
    /// The user name is not acceptable.
    #[error("invalid user name: 1-64 bytes of A-Z a-z 0-9 _ : @ = + ~ -")]
    InvalidUser,
    /// Not a JWT, an unknown algorithm (`none` included), or claims of the wrong shape.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Signed with an algorithm no configured key verifies.
    #[error("no key for the token's algorithm")]
    UnknownAlgorithm,
    /// No configured key verifies the signature.
    #[error("token signature does not verify")]
    BadSignature,
    /// Past its `exp` (plus leeway). A token without `exp` is malformed.
    #[error("token expired")]
    Expired,
    /// Before its `nbf` (minus leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// `aud` is not this gateway's audience (or absent when one is configured).
    #[error("token is for another audience")]
    WrongAudience,
    /// `iss` is not the configured issuer (or absent when one is configured).
    #[error("token is from another issuer")]
    WrongIssuer,
}

impl AuthError {
    /// Every `reason` label, for metric pre-registration.
    pub const REASONS: &[&str] = &[
        "missing",
        "invalid_user",
        "malformed",
        "unknown_algorithm",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
    ];

    /// The stable `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::InvalidUser => "invalid_user",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnknownAlgorithm => "unknown_algorithm",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongIssuer => "wrong_issuer",
        }
    }
}

/// Turns an upgrade request into an identity.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity making the request, or why it is refused.
    fn authenticate(&self, uri: &Uri, headers: &HeaderMap) -> Result<Identity, AuthError>;

    /// Which authenticator this is: the `authenticator` label of
    /// `offpath_transport_identity_info` (`token` or `insecure_dev`).
    fn kind(&self) -> &'static str;
}

/// Development identity: whatever `?user=` says. Anyone can be anyone: never expose it
/// to other people (`offpath transport` runs it only with `--insecure-dev-identity`).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryUser;

impl QueryUser {
    /// The `authenticator` label of the development identity.
    pub const KIND: &str = "insecure_dev";
}

impl Authenticator for QueryUser {
    fn authenticate(&self, uri: &Uri, _headers: &HeaderMap) -> Result<Identity, AuthError> {
        let user = query_param(uri, "user").ok_or(AuthError::Missing)?;
        if offpath_protocol::subject::is_valid_token(user) {
            Ok(Identity::unrestricted(user.into()))
        } else {
            Err(AuthError::InvalidUser)
        }
    }

    fn kind(&self) -> &'static str {
        Self::KIND
    }
}

/// The raw value of the first `name=` in the query (not percent-decoded: user names and
/// tokens need no escaping, and an escaped one is refused by the caller's rules).
fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Logs loudly and sets `offpath_transport_identity_info` for the running authenticator.
pub(crate) fn announce(auth: &dyn Authenticator) {
    for kind in [Tokens::KIND, QueryUser::KIND] {
        let running = if kind == auth.kind() { 1.0 } else { 0.0 };
        metrics::gauge!(crate::metrics::IDENTITY_INFO, "authenticator" => kind).set(running);
    }
    if auth.kind() == QueryUser::KIND {
        tracing::warn!(
            "INSECURE DEVELOPMENT IDENTITY: anyone can connect as anyone with ?user=<name>; \
             configure signed tokens before letting other people in"
        );
    } else {
        tracing::info!(
            authenticator = auth.kind(),
            "client identity: signed tokens"
        );
    }
}
