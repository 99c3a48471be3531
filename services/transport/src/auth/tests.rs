//! Claim handling, token transport, the origin rule and start-up choices.

use crate::config::IdentityConfig;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::Config;

/// A test-only Ed25519 key pair (generated with `openssl genpkey -algorithm ed25519` for
/// these tests; it protects nothing).
pub(super) const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIK2SBRRKjA6IGP8UUkf9SHrhWs/XjVESWBBL1zPjPug
-----END PRIVATE KEY-----
";
pub(super) const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAx1pHLLQcvRJYm6GTt0ubnPelvN4ISSUe4SUOR5KYva4=
-----END PUBLIC KEY-----
";
/// Another test-only Ed25519 public key, of a pair whose private half is not here.
const ED_OTHER_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAhP0eXzJtiubjl/+FSMdtGAkAUHaetH5kHvbRH8+5JZg=
-----END PUBLIC KEY-----
";
/// A test-only RSA key pair (`openssl genpkey -algorithm RSA`, 2048 bits; protects nothing).
pub(super) const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCqPoBq60Fft1yD
Nwyf3Wt9eqZLvSffCzNKxtrXCXPbGnDrjqvWg3WDPcMgGHr9b2rj8/jamchb5sro
HQJ85qnk9+BZA5L5rHzndoSlqSZr0G/0yYvuvt8JSo6YyVXqKrh7J1/jf8KsA99V
C9g86kNow/TRLsORacdcyxci+kqw8kcauusuU1wTZpj2bvGJsIPiNE0f3ZfELVVk
qG91SD4kQ05QEycF0y72k/+vhQMMwNnjKkiD8GQqlb+8YHuFG5XaURZqWgTX0cuy
AkErP5HYyLY5aIOovWpvXh60Df+WScomd91rFGfbXKa4Gr0YeeuEyZEyKwnQ5t7r
QSa3gZxDAgMBAAECggEAAWj0JvmsK+SCcY2A54Y45YJeBCI4ky92eaMGxEWvmHqF
q4E/V0PT+2obiVhXFMbJBWnyea8ZPg8tMMZANieQ0mQgCXW85pTRDFvL+O0CD8Iu
4A+cqI7CDJF6CFd6MPGarYpwNCxpJQl7hW1+S2s1Rtitf5yg7jKC8vfh5NM5VTn/
PCX952Sicbri3jxRY0zPiaItLZSkMrkgM5XBytdexv+r/6kHRPYmDR67Axs2sDis
w2j5+U90k2lTQG2PkImZOsv+dmM4OeWMn1ADF3JMz7qUygiuhMQZ4TFwU6SwiBkH
rNQ73Yj9spW4PMFMbr8t608H0QPfLCT20rm3X3lC4QKBgQDt0PLSZHfv8VwhEPsN
/TcVXKIU4qtSXO1zHmKnzCQ8zK+ZDgFdCRmrFm0Hej2nqGCeSqeM/CkRvI7VzEjS
dY9Yvb6HQdaVURX1BD0CV8BjtAIu36vRHRN21FUbfJqwjYs2IS6w5kPBPksbUV98
yQGK/btq66HAyAGzCBeNJH+LPwKBgQC3QuMZcp2cepMWAOejv9ny/NjpXRDzRJWy
cmFtzqbkVhf+vUddL5FL3o2aPlFrfUijJzvdzflesZ8LZb5BtDKSeij5KN5RJIhe
hAx1ItCXaLuKA2jFd3sEDnAOrpBDV+Z3qlzxSF5sfmuB3hd2GPFLwAZcD/j/NGLU
GltiOGZB/QKBgEZRTBstndESur0EOldukcT9OOeYBjQ6SfOJ/n3C/MwFcb59x6Vs
tWxDG0XkvSo/vSHQzS4AuVwHNuy8lKO2IwaIRDfWHc7UxPtHn4p7y+UvKp4VgMY6
JLE0I14XP94IXCtLMHUaANq4wph3PRa2kIA6ehopRhCskuQO9nfDXPsdAoGBAIzx
4H/d6uJCU4WExKLoFtQPKzSv4y11/jv0RIKTgT/0BxhgstY0k2bqj7WlYDFvdcIl
lqGMnNH7gfreEWmvEYYedgzLJdD6a/dlT793Oz53ymTnIllc/zurbvubvlBM9m/q
kvjvU8/VmxGSojCuFkbQNRPxJOwCek/uxYHRJrRxAoGBAN9EwYlgz1dW6Rp7+NRm
W7k6Mh0+bevJFA5kQ/hXdUzwOfXOIxr2NlMcWRAmMG+hVeJT8zAHxmiIlejnZwKg
irt9deyCPGg7Ei6fIUso9RfHD1FYc/KxuJkMQmr1AqAbNSvDOBWCl0FCg2Wrt1fg
s5tw3xg8dyonlrCfyFV3FJk6
-----END PRIVATE KEY-----
";
pub(super) const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqj6AautBX7dcgzcMn91r
fXqmS70n3wszSsba1wlz2xpw646r1oN1gz3DIBh6/W9q4/P42pnIW+bK6B0CfOap
5PfgWQOS+ax853aEpakma9Bv9MmL7r7fCUqOmMlV6iq4eydf43/CrAPfVQvYPOpD
aMP00S7DkWnHXMsXIvpKsPJHGrrrLlNcE2aY9m7xibCD4jRNH92XxC1VZKhvdUg+
JENOUBMnBdMu9pP/r4UDDMDZ4ypIg/BkKpW/vGB7hRuV2lEWaloE19HLsgJBKz+R
2Mi2OWiDqL1qb14etA3/lknKJnfdaxRn21ymuBq9GHnrhMmRMisJ0Obe60Emt4Gc
QwIDAQAB
-----END PUBLIC KEY-----
";
pub(super) const SECRET: &[u8] = b"test-secret-of-at-least-32-bytes-long";
const OTHER_SECRET: &[u8] = b"another-secret-of-at-least-32-bytes!!";

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(super) fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub(super) fn eddsa(claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key).unwrap()
}

pub(super) fn tokens() -> Tokens {
    Tokens::new(None, None, Duration::from_secs(5))
        .hs256_secret(SECRET, "test")
        .unwrap()
}

/// `?user=` is required and must be a clean token.
#[test]
fn query_user() {
    let auth = QueryUser;
    let check = |uri: &str| {
        auth.authenticate(&uri.parse().unwrap(), &HeaderMap::new())
            .map(|identity| identity.user.to_string())
    };
    assert_eq!(check("/ws?user=alice").as_deref(), Ok("alice"));
    assert_eq!(check("/ws?x=1&user=bob").as_deref(), Ok("bob"));
    assert_eq!(check("/ws"), Err(AuthError::Missing));
    assert_eq!(check("/ws?user="), Err(AuthError::InvalidUser));
    assert_eq!(check("/ws?user=a%20b"), Err(AuthError::InvalidUser));
}

/// A valid token gives its `sub`, its rooms and its expiry (plus leeway).
#[test]
fn valid_token_gives_its_claims() {
    let exp = now() + 600;
    let token = hs256(
        &json!({"sub": "alice", "exp": exp, "rooms": ["kids-*"]}),
        SECRET,
    );
    let identity = tokens().verify(&token).unwrap();
    assert_eq!(&*identity.user, "alice");
    assert!(identity.rooms.allows("kids-1") && !identity.rooms.allows("lobby"));
    let expected = UNIX_EPOCH + Duration::from_secs(exp + 5);
    assert_eq!(identity.expires_at, Some(expected));
    let open = hs256(&json!({"sub": "bob", "exp": exp}), SECRET);
    assert!(tokens().verify(&open).unwrap().rooms.allows("anything"));
}

/// `account_created_at` (seconds) becomes the identity's `account_created_ms`; one in the
/// future, or not a number, is malformed; absent, nobody vouches.
#[test]
fn account_creation_is_vouched_by_the_token() {
    let exp = now() + 600;
    let claims =
        |created: Value| json!({"sub": "alice", "exp": exp, "account_created_at": created});
    let identity = tokens()
        .verify(&hs256(&claims(json!(now() - 3600)), SECRET))
        .unwrap();
    assert_eq!(identity.account_created_ms, Some((now() - 3600) * 1000));
    let future = tokens().verify(&hs256(&claims(json!(now() + 3600)), SECRET));
    assert!(matches!(future, Err(AuthError::Malformed(_))), "{future:?}");
    let text = tokens().verify(&hs256(&claims(json!("yesterday")), SECRET));
    assert!(matches!(text, Err(AuthError::Malformed(_))), "{text:?}");
    let none = tokens().verify(&hs256(&json!({"sub": "bob", "exp": exp}), SECRET));
    assert_eq!(none.unwrap().account_created_ms, None);
}

/// Expired, not yet valid, unsigned, foreign-key, wrong-claim tokens are each refused with
/// their own reason.
#[test]
fn bad_tokens_are_refused() {
    let t = tokens();
    let exp = now() + 600;
    let expired = hs256(&json!({"sub": "a", "exp": now() - 60}), SECRET);
    assert_eq!(t.verify(&expired).unwrap_err(), AuthError::Expired);
    let early = hs256(&json!({"sub": "a", "exp": exp, "nbf": now() + 300}), SECRET);
    assert_eq!(t.verify(&early).unwrap_err(), AuthError::NotYetValid);
    let foreign = hs256(&json!({"sub": "a", "exp": exp}), OTHER_SECRET);
    assert_eq!(t.verify(&foreign).unwrap_err(), AuthError::BadSignature);
    // `alg: none`, no signature: the header names no algorithm the gateway knows.
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"sub": "a", "exp": exp}).to_string())
    );
    assert!(matches!(t.verify(&none), Err(AuthError::Malformed(_))));
    let no_exp = hs256(&json!({"sub": "a"}), SECRET);
    assert!(matches!(t.verify(&no_exp), Err(AuthError::Malformed(_))));
    let no_sub = hs256(&json!({"exp": exp}), SECRET);
    assert!(matches!(t.verify(&no_sub), Err(AuthError::Malformed(_))));
    let bad_sub = hs256(&json!({"sub": "a.b", "exp": exp}), SECRET);
    assert_eq!(t.verify(&bad_sub).unwrap_err(), AuthError::InvalidUser);
    let bad_rooms = hs256(&json!({"sub": "a", "exp": exp, "rooms": ["a.*"]}), SECRET);
    assert!(matches!(t.verify(&bad_rooms), Err(AuthError::Malformed(_))));
    assert!(matches!(
        t.verify("not-a-jwt"),
        Err(AuthError::Malformed(_))
    ));
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// `iss` and `aud` are enforced when configured.
#[test]
fn issuer_and_audience() {
    let t = Tokens::new(
        Some("https://id.example".into()),
        Some("chat".into()),
        Duration::ZERO,
    )
    .hs256_secret(SECRET, "test")
    .unwrap();
    let exp = now() + 600;
    let claims = |iss: &str, aud: &str| json!({"sub": "a", "exp": exp, "iss": iss, "aud": aud});
    assert!(
        t.verify(&hs256(&claims("https://id.example", "chat"), SECRET))
            .is_ok()
    );
    let other_aud = hs256(&claims("https://id.example", "billing"), SECRET);
    assert_eq!(t.verify(&other_aud).unwrap_err(), AuthError::WrongAudience);
    let other_iss = hs256(&claims("https://evil.example", "chat"), SECRET);
    assert_eq!(t.verify(&other_iss).unwrap_err(), AuthError::WrongIssuer);
    let no_aud = hs256(
        &json!({"sub": "a", "exp": exp, "iss": "https://id.example"}),
        SECRET,
    );
    assert_eq!(t.verify(&no_aud).unwrap_err(), AuthError::WrongAudience);
}

/// EdDSA tokens verify against the public key; an HS256 token whose "secret" is that public
/// key is refused when no HS256 key exists (the case with one is
/// `hardening_tests::algorithm_confusion_with_both_kinds_of_key`), and so is a token of a
/// key not configured; with several keys (rotation), any of them verifies.
#[test]
fn public_keys_and_rotation() {
    let t = Tokens::new(None, None, Duration::ZERO)
        .public_key_pem(ED_OTHER_PUBLIC.as_bytes(), "old.pem")
        .unwrap()
        .public_key_pem(ED_PUBLIC.as_bytes(), "new.pem")
        .unwrap();
    let claims = json!({"sub": "carol", "exp": now() + 600});
    assert_eq!(&*t.verify(&eddsa(&claims)).unwrap().user, "carol");
    let confused = hs256(&claims, ED_PUBLIC.as_bytes());
    assert_eq!(
        t.verify(&confused).unwrap_err(),
        AuthError::UnknownAlgorithm
    );
    let only_old = Tokens::new(None, None, Duration::ZERO)
        .public_key_pem(ED_OTHER_PUBLIC.as_bytes(), "old.pem")
        .unwrap();
    assert_eq!(
        only_old.verify(&eddsa(&claims)).unwrap_err(),
        AuthError::BadSignature
    );
    let rotated = tokens().hs256_secret(OTHER_SECRET, "next").unwrap();
    assert!(rotated.verify(&hs256(&claims, OTHER_SECRET)).is_ok());
    assert!(rotated.verify(&hs256(&claims, SECRET)).is_ok());
}

/// Short secrets and non-keys are refused at start.
#[test]
fn unusable_keys() {
    let short = Tokens::new(None, None, Duration::ZERO).hs256_secret(b"short", "s");
    assert!(matches!(short, Err(KeyError::ShortSecret { .. })));
    let junk = Tokens::new(None, None, Duration::ZERO).public_key_pem(b"junk", "k.pem");
    assert!(matches!(junk, Err(KeyError::NotAPublicKey { .. })));
}

/// The token is read from `Authorization: Bearer`, else from `?access_token=`; `?user=`
/// means nothing to the token authenticator.
#[test]
fn where_tokens_come_from() {
    let t = tokens();
    let token = hs256(&json!({"sub": "dave", "exp": now() + 600}), SECRET);
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    headers.insert(header::AUTHORIZATION, bearer);
    let uri = "/ws".parse().unwrap();
    assert_eq!(&*t.authenticate(&uri, &headers).unwrap().user, "dave");
    let uri = format!("/ws?access_token={token}").parse().unwrap();
    assert_eq!(
        &*t.authenticate(&uri, &HeaderMap::new()).unwrap().user,
        "dave"
    );
    let uri = "/ws?user=alice".parse().unwrap();
    assert_eq!(
        t.authenticate(&uri, &HeaderMap::new()).unwrap_err(),
        AuthError::Missing
    );
}

pub(super) fn with_origin(origin: Option<&str>, host: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
    if let Some(origin) = origin {
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
    }
    headers
}

/// Neither token keys nor the dev flag, or both, is a start-up error; either alone works.
#[test]
fn choosing_the_authenticator() {
    let config = Config::default();
    let secret = std::str::from_utf8(SECRET).unwrap();
    assert_eq!(
        authenticator(&config, None).err(),
        Some(IdentityError::Unconfigured)
    );
    assert_eq!(
        authenticator(&config, Some(secret)).unwrap().kind(),
        "token"
    );
    let dev = Config {
        identity: IdentityConfig {
            insecure_dev_identity: true,
            ..Config::default().identity
        },
        ..Config::default()
    };
    assert_eq!(authenticator(&dev, None).unwrap().kind(), "insecure_dev");
    assert_eq!(
        authenticator(&dev, Some(secret)).err(),
        Some(IdentityError::Both)
    );
    let missing = Config {
        identity: IdentityConfig {
            token_public_key_file: vec!["/nonexistent/key.pem".into()],
            token_audience: Some("chat".into()),
            ..Config::default().identity
        },
        ..Config::default()
    };
    assert!(matches!(
        authenticator(&missing, None).err(),
        Some(IdentityError::Key(KeyError::Read { .. }))
    ));
}

/// `offpath up` gives its transport the development identity unless token keys are passed
/// through. (Assumes no `OFFPATH_TOKEN_…` variable in the test's environment.)
#[test]
fn up_wants_tokens_only_when_given_keys() {
    let flags = |list: &[&str]| list.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    assert!(!wants_tokens(&flags(&["--tenant=acme"])));
    assert!(wants_tokens(&flags(&["--token-hs256-file=/run/secret"])));
    assert!(wants_tokens(&flags(&["--token-public-key-file", "k.pem"])));
}

/// RS256 tokens verify against an RSA public key; the key type picks the algorithm, so an
/// EdDSA token is refused by a gateway that has only the RSA key.
#[test]
fn rs256_tokens() {
    let t = Tokens::new(None, None, Duration::ZERO)
        .public_key_pem(RSA_PUBLIC.as_bytes(), "rsa.pem")
        .unwrap();
    let claims = json!({"sub": "erin", "exp": now() + 600});
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    assert_eq!(&*t.verify(&token).unwrap().user, "erin");
    assert_eq!(
        t.verify(&eddsa(&claims)).unwrap_err(),
        AuthError::UnknownAlgorithm
    );
}
