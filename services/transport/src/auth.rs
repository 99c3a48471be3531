//! Who is connecting. Pluggable: the gateway asks an [`Authenticator`]; the development
//! default trusts `?user=<name>` (a later issue adds signed tokens).

use std::sync::Arc;

use axum::http::{HeaderMap, Uri};

/// Why a connection was refused before the websocket upgrade (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No identity in the request.
    #[error("no user: connect to /ws?user=<name>")]
    Missing,
    /// The identity is not acceptable.
    #[error("invalid user name: 1-64 bytes of A-Z a-z 0-9 _ : @ = + ~ -")]
    Invalid,
}

/// Turns an upgrade request into a user name.
pub trait Authenticator: Send + Sync + 'static {
    /// The user making the request, or why it is refused.
    fn authenticate(&self, uri: &Uri, headers: &HeaderMap) -> Result<Arc<str>, AuthError>;
}

/// Development identity: whatever `?user=` says. Never expose it to the internet.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryUser;

impl Authenticator for QueryUser {
    fn authenticate(&self, uri: &Uri, _headers: &HeaderMap) -> Result<Arc<str>, AuthError> {
        let query = uri.query().unwrap_or_default();
        let user = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == "user")
            .map(|(_, value)| value)
            .ok_or(AuthError::Missing)?;
        if offpath_protocol::subject::is_valid_token(user) {
            Ok(user.into())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `?user=` is required and must be a clean token.
    #[test]
    fn query_user() {
        let auth = QueryUser;
        let check = |uri: &str| auth.authenticate(&uri.parse().unwrap(), &HeaderMap::new());
        assert_eq!(check("/ws?user=alice").as_deref(), Ok("alice"));
        assert_eq!(check("/ws?x=1&user=bob").as_deref(), Ok("bob"));
        assert_eq!(check("/ws"), Err(AuthError::Missing));
        assert_eq!(check("/ws?user="), Err(AuthError::Invalid));
        assert_eq!(check("/ws?user=a%20b"), Err(AuthError::Invalid));
    }
}
