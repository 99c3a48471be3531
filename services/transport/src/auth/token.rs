//! Signed tokens (JWT). The algorithm named in a token's header picks the keys that may
//! verify it (HS256 → the shared secrets, EdDSA/RS256 → the public keys of that type), so a
//! token cannot make the gateway use a public key as an HMAC secret; `alg: none` is not an
//! algorithm `jsonwebtoken` knows and is refused as malformed. Several keys of one type may
//! be configured at once (rotation): a token is accepted if any of them verifies it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Uri, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthError, Authenticator, Identity, RoomGrant, query_param};

/// Shortest HS256 secret accepted: 256 bits, the size of the HMAC-SHA256 output (RFC 7518
/// §3.2 requires at least that).
const MIN_SECRET_BYTES: usize = 32;

/// The query parameter a browser puts its token in (RFC 6750 §2.3's name): a browser
/// cannot set headers on a websocket.
pub(crate) const QUERY_PARAM: &str = "access_token";

/// A key that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The HS256 secret is too short to be safe.
    #[error("{location}: an HS256 secret must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret {
        /// Where the secret came from (a path or a variable name; never the secret).
        location: String,
    },
    /// An RSA public key too short to be safe.
    #[error("{location}: a {bits}-bit RSA key; RS256 keys must have at least {min} bits", min = super::pem::MIN_RSA_BITS)]
    ShortRsaKey {
        /// The file.
        location: String,
        /// Its modulus size.
        bits: usize,
    },
    /// Not a PEM Ed25519 or RSA public key.
    #[error("{location}: not a PEM Ed25519 or RSA public key ({detail})")]
    NotAPublicKey {
        /// The file.
        location: String,
        /// What the parser said.
        detail: String,
    },
    /// The file could not be read.
    #[error("{location}: {detail}")]
    Read {
        /// The file.
        location: String,
        /// The I/O error.
        detail: String,
    },
}

/// One verification key and where it came from (for logs; never the key itself).
struct Key {
    algorithm: Algorithm,
    key: DecodingKey,
    source: String,
}

/// The claims the gateway reads. Others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    /// The user id: the sender other members see.
    sub: String,
    /// Expiry, seconds since the Unix epoch (required).
    exp: u64,
    /// Rooms the connection may join: `None` when the claim is absent (every room),
    /// `Some(None)` when it is `null` (malformed: not "every room").
    #[serde(default, deserialize_with = "present")]
    rooms: Option<Option<Vec<String>>>,
    /// When the account was created, seconds since the Unix epoch (optional): what the
    /// platform vouches for, for new-account rules.
    #[serde(default)]
    account_created_at: Option<u64>,
}

/// A claim that is present, `null` included (serde alone reads `null` as absent).
fn present<'de, D>(deserializer: D) -> Result<Option<Option<Vec<String>>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<Vec<String>>::deserialize(deserializer).map(Some)
}

/// The token authenticator: keys, and the claims it requires.
pub struct Tokens {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_lifetime: Option<Duration>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material (HS256 secrets above all) stays out of logs.
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{:?} from {}", k.algorithm, k.source))
            .collect();
        f.debug_struct("Tokens")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl Tokens {
    /// The `authenticator` label of the token authenticator.
    pub const KIND: &str = "token";

    /// No keys yet; `iss` and `aud` must equal `issuer` and `audience` when those are
    /// given; `exp` and `nbf` are checked with `leeway` for clock skew.
    pub fn new(issuer: Option<String>, audience: Option<String>, leeway: Duration) -> Self {
        Self {
            keys: Vec::new(),
            issuer,
            audience,
            leeway,
            max_lifetime: None,
        }
    }

    /// Ends every session at most `max` after it opens, whatever its token's `exp` says
    /// (a token minted for a year does not keep a socket open for a year).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// Adds an HS256 shared secret (`source` names where it came from, for messages).
    pub fn hs256_secret(mut self, secret: &[u8], source: &str) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret {
                location: source.into(),
            });
        }
        self.keys.push(Key {
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
            source: source.into(),
        });
        Ok(self)
    }

    /// Adds a PEM public key: Ed25519 (verifies EdDSA tokens) or RSA of at least 2048 bits
    /// (RS256). The file must hold one block labelled `PUBLIC KEY` or `RSA PUBLIC KEY`: a
    /// private key or a certificate is refused.
    pub fn public_key_pem(mut self, pem: &[u8], source: &str) -> Result<Self, KeyError> {
        let not_a_key = |detail: String| KeyError::NotAPublicKey {
            location: source.into(),
            detail,
        };
        let (der, pkcs1) = super::pem::public_der(pem).map_err(not_a_key)?;
        let ed = (!pkcs1)
            .then(|| DecodingKey::from_ed_pem(pem).ok())
            .flatten();
        let (algorithm, key) = match ed {
            Some(key) => (Algorithm::EdDSA, key),
            None => {
                let key = DecodingKey::from_rsa_pem(pem).map_err(|e| not_a_key(e.to_string()))?;
                let bits = super::pem::rsa_modulus_bits(&der, pkcs1)
                    .ok_or_else(|| not_a_key("unreadable RSA modulus".into()))?;
                if bits < super::pem::MIN_RSA_BITS {
                    return Err(KeyError::ShortRsaKey {
                        location: source.into(),
                        bits,
                    });
                }
                (Algorithm::RS256, key)
            }
        };
        self.keys.push(Key {
            algorithm,
            key,
            source: source.into(),
        });
        Ok(self)
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` and reads its identity.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(refusal)?;
        if has_critical_extensions(token) {
            // RFC 7515 §4.1.11: a recipient that does not understand every `crit`
            // extension must refuse the token (jsonwebtoken ignores the field).
            return Err(AuthError::Malformed(
                "crit header: extensions not understood".into(),
            ));
        }
        let validation = self.validation(header.alg);
        let mut result = Err(AuthError::UnknownAlgorithm);
        for key in self.keys.iter().filter(|k| k.algorithm == header.alg) {
            result = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
                .map(|data| data.claims)
                .map_err(refusal);
            // Claims are checked only once a signature verifies: any error but a bad
            // signature is this key's final word.
            if !matches!(result, Err(AuthError::BadSignature)) {
                break;
            }
        }
        self.identity(result?)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Unconfigured: a token's `aud` is not checked.
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        // A configured claim must be present, not merely right when present.
        validation.set_required_spec_claims(&required);
        validation
    }

    fn identity(&self, claims: Claims) -> Result<Identity, AuthError> {
        if !offpath_protocol::subject::is_valid_token(&claims.sub) {
            return Err(AuthError::InvalidUser);
        }
        let rooms = match claims.rooms {
            None => RoomGrant::any(),
            Some(None) => return Err(AuthError::Malformed("rooms claim is null".into())),
            Some(Some(patterns)) => RoomGrant::only(patterns).map_err(AuthError::Malformed)?,
        };
        // `exp` is the client's number: near u64::MAX it does not fit a SystemTime.
        let mut expires_at = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .and_then(|exp| exp.checked_add(self.leeway))
            .ok_or_else(|| AuthError::Malformed("exp out of range".into()))?;
        if let Some(cap) = self
            .max_lifetime
            .and_then(|max| SystemTime::now().checked_add(max))
        {
            expires_at = expires_at.min(cap);
        }
        let account_created_ms = match claims.account_created_at {
            None => None,
            Some(secs) => {
                let now = SystemTime::now()
                    .checked_add(self.leeway)
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                if secs > now {
                    return Err(AuthError::Malformed(
                        "account_created_at is in the future".into(),
                    ));
                }
                Some(secs.saturating_mul(1000))
            }
        };
        Ok(Identity {
            user: Arc::from(claims.sub),
            rooms,
            expires_at: Some(expires_at),
            account_created_ms,
        })
    }
}

/// What a `jsonwebtoken` error means for the client.
fn refusal(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        ErrorKind::InvalidAlgorithm => AuthError::UnknownAlgorithm,
        _ => AuthError::Malformed(err.to_string()),
    }
}

/// The token of a request: `Authorization: Bearer <token>`, else `?access_token=<token>`.
pub(crate) fn token_of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer.or_else(|| query_param(uri, QUERY_PARAM))
}

impl Authenticator for Tokens {
    fn authenticate(&self, uri: &Uri, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let token = token_of(uri, headers).ok_or(AuthError::Missing)?;
        self.verify(token)
    }

    fn kind(&self) -> &'static str {
        Self::KIND
    }
}

/// Whether the token's header names critical extensions (`crit`), none of which this
/// gateway understands.
fn has_critical_extensions(token: &str) -> bool {
    use base64::Engine;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|header| header.get("crit").is_some())
}
