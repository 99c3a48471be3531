//! The review of the identity work, attack by attack: tokens for other apps, DNS rebinding,
//! an `exp` that overflows, private and short keys, the development identity on a network
//! address, algorithm confusion with both key kinds configured.

use crate::config::IdentityConfig;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::tests::{
    ED_PRIVATE, ED_PUBLIC, RSA_PRIVATE, RSA_PUBLIC, SECRET, eddsa, hs256, now, tokens, with_origin,
};
use super::*;
use crate::Config;

/// A test-only 1024-bit RSA public key (`openssl genpkey`; protects nothing).
const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDdwwH+4xmYyL4bBd/CTlYoayp3
O/9UWhDSxtmTm0yE/AhUIVZaJMbZoyJQtJMTYFzAeA9oyHdBGi0alweHqOGhvosb
JCBtB6xB/m2mM2lEXEV7RGAu/xCpqnQQ7dpWEAdyVdVie+CogWQjWd7niPCEivmc
A5OK6XlMJJKXmD5zQQIDAQAB
-----END PUBLIC KEY-----
";
/// `RSA_PUBLIC` in PKCS#1 form (`openssl rsa -pubin -RSAPublicKey_out`).
const RSA_PKCS1_PUBLIC: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAqj6AautBX7dcgzcMn91rfXqmS70n3wszSsba1wlz2xpw646r1oN1
gz3DIBh6/W9q4/P42pnIW+bK6B0CfOap5PfgWQOS+ax853aEpakma9Bv9MmL7r7f
CUqOmMlV6iq4eydf43/CrAPfVQvYPOpDaMP00S7DkWnHXMsXIvpKsPJHGrrrLlNc
E2aY9m7xibCD4jRNH92XxC1VZKhvdUg+JENOUBMnBdMu9pP/r4UDDMDZ4ypIg/Bk
KpW/vGB7hRuV2lEWaloE19HLsgJBKz+R2Mi2OWiDqL1qb14etA3/lknKJnfdaxRn
21ymuBq9GHnrhMmRMisJ0Obe60Emt4GcQwIDAQAB
-----END RSA PUBLIC KEY-----
";
/// The raw 32 bytes of `ED_PUBLIC` (the last 32 bytes of its DER).
const ED_PUBLIC_RAW: [u8; 32] = [
    0xc7, 0x5a, 0x47, 0x2c, 0xb4, 0x1c, 0xbd, 0x12, 0x58, 0x9b, 0xa1, 0x93, 0xb7, 0x4b, 0x9b, 0x9c,
    0xf7, 0xa5, 0xbc, 0xde, 0x08, 0x49, 0x25, 0x1e, 0xe1, 0x25, 0x0e, 0x47, 0x92, 0x98, 0xbd, 0xae,
];

/// Public keys without `--token-audience` refuse to start (a provider's key signs tokens for
/// other apps too); HS256 secrets alone may go without one.
#[test]
fn public_keys_need_an_audience() {
    let dir = std::env::temp_dir().join(format!("offpath-aud-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("ed.pem");
    std::fs::write(&key, ED_PUBLIC).unwrap();
    let keyed = Config {
        identity: IdentityConfig {
            token_public_key_file: vec![key],
            ..Config::default().identity
        },
        ..Config::default()
    };
    assert_eq!(
        authenticator(&keyed, None).err(),
        Some(IdentityError::AudienceRequired)
    );
    let with_audience = Config {
        identity: IdentityConfig {
            token_audience: Some("chat".into()),
            ..keyed.identity
        },
        ..keyed
    };
    assert_eq!(authenticator(&with_audience, None).unwrap().kind(), "token");
    let secret = std::str::from_utf8(SECRET).unwrap();
    assert!(authenticator(&Config::default(), Some(secret)).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `"rooms": null` is malformed, not "every room".
#[test]
fn a_null_rooms_claim_is_malformed() {
    let token = hs256(
        &json!({"sub": "a", "exp": now() + 600, "rooms": null}),
        SECRET,
    );
    assert!(matches!(
        tokens().verify(&token),
        Err(AuthError::Malformed(_))
    ));
}

/// An `exp` at or past 2^63 seconds is refused as malformed instead of panicking the task.
#[test]
fn a_huge_exp_is_malformed_not_a_panic() {
    for exp in [1u64 << 63, u64::MAX] {
        let token = hs256(&json!({"sub": "a", "exp": exp}), SECRET);
        assert!(
            matches!(tokens().verify(&token), Err(AuthError::Malformed(_))),
            "exp {exp}"
        );
    }
}

/// `--token-max-lifetime-secs` ends a session before a far-off `exp`.
#[test]
fn max_lifetime_caps_the_session() {
    let t = tokens().max_lifetime(Duration::from_secs(60));
    let token = hs256(&json!({"sub": "a", "exp": now() + 86_400}), SECRET);
    let ends = t.verify(&token).unwrap().expires_at.unwrap();
    assert!(ends <= SystemTime::now() + Duration::from_secs(61));
}

/// Private keys (RSA or Ed25519), several blocks and RSA keys under 2048 bits are refused at
/// start; a PKCS#1 `RSA PUBLIC KEY` of 2048 bits works.
#[test]
fn private_and_short_keys_are_refused() {
    let load =
        |pem: &str| Tokens::new(None, None, Duration::ZERO).public_key_pem(pem.as_bytes(), "k");
    for private in [RSA_PRIVATE, ED_PRIVATE] {
        assert!(matches!(load(private), Err(KeyError::NotAPublicKey { .. })));
    }
    let two = format!("{ED_PUBLIC}{RSA_PUBLIC}");
    assert!(matches!(load(&two), Err(KeyError::NotAPublicKey { .. })));
    assert!(matches!(
        load(RSA_1024_PUBLIC),
        Err(KeyError::ShortRsaKey { bits: 1024, .. })
    ));
    let pkcs1 = load(RSA_PKCS1_PUBLIC).unwrap();
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let claims = json!({"sub": "erin", "exp": now() + 600});
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    assert_eq!(&*pkcs1.verify(&token).unwrap().user, "erin");
    assert!(load(RSA_PUBLIC).is_ok() && load(ED_PUBLIC).is_ok());
}

/// Algorithm confusion with an HS256 secret AND an Ed25519 key configured: an HS256 token
/// keyed with the public key (raw bytes or PEM text) is a bad signature, and EdDSA still
/// verifies.
#[test]
fn algorithm_confusion_with_both_kinds_of_key() {
    let t = tokens()
        .public_key_pem(ED_PUBLIC.as_bytes(), "ed.pem")
        .unwrap();
    let claims = json!({"sub": "mallory", "exp": now() + 600});
    for public in [&ED_PUBLIC_RAW[..], ED_PUBLIC.as_bytes()] {
        let confused = hs256(&claims, public);
        assert_eq!(t.verify(&confused).unwrap_err(), AuthError::BadSignature);
    }
    assert_eq!(&*t.verify(&eddsa(&claims)).unwrap().user, "mallory");
    assert_eq!(&*t.verify(&hs256(&claims, SECRET)).unwrap().user, "mallory");
}

/// `Authorization: Bearer` wins over `?access_token=`: a link cannot swap the identity of
/// a client that sends a header.
#[test]
fn the_header_wins_over_the_query_parameter() {
    let exp = now() + 600;
    let alice = hs256(&json!({"sub": "alice", "exp": exp}), SECRET);
    let bob = hs256(&json!({"sub": "bob", "exp": exp}), SECRET);
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {alice}")).unwrap();
    headers.insert(header::AUTHORIZATION, bearer);
    let uri = format!("/ws?access_token={bob}").parse().unwrap();
    assert_eq!(
        &*tokens().authenticate(&uri, &headers).unwrap().user,
        "alice"
    );
}

/// A row of the origin table: `Origin`, `Host`, `--allowed-origins`, `--public-hosts`,
/// whether the page may connect.
type Case<'a> = (Option<&'a str>, &'a str, &'a [String], &'a [String], bool);

/// The origin rule, as a table: same-origin needs a loopback or listed `Host` (a DNS
/// rebinding page has `Origin` and `Host` both its own name); IPv6, explicit default ports
/// and scheme mismatches.
#[test]
fn origin_rule() {
    let none: &[String] = &[];
    let list = ["https://chat.example.com".to_string()];
    let gw = ["gw".to_string()];
    #[rustfmt::skip]
    let cases: &[Case] = &[
        (None, "gw:8080", none, none, true),
        (Some("http://gw:8080"), "gw:8080", none, &gw, true),
        (Some("http://GW:8080/"), "GW:8080", none, &gw, true),
        (Some("https://gw"), "gw:443", none, &gw, true),
        (Some("https://gw:443"), "gw", none, &gw, true),
        (Some("https://gw"), "gw:80", none, &gw, false),
        (Some("http://gw"), "gw:443", none, &gw, false),
        (Some("https://gw:8080"), "gw:8080", none, &gw, true),
        (Some("http://evil.example"), "gw:8080", none, &gw, false),
        (Some("http://gw:8081"), "gw:8080", none, &gw, false),
        (Some("null"), "gw:8080", none, &gw, false),
        // DNS rebinding: same-origin on a name the gateway does not know.
        (Some("http://rebind.evil:8080"), "rebind.evil:8080", none, none, false),
        (Some("http://rebind.evil:8080"), "rebind.evil:8080", none, &gw, false),
        (Some("http://gw:8080"), "gw:8080", none, none, false),
        (Some("http://localhost:8080"), "localhost:8080", none, none, true),
        (Some("http://127.0.0.1:8080"), "127.0.0.1:8080", none, none, true),
        (Some("http://127.1.2.3:8080"), "127.1.2.3:8080", none, none, true),
        (Some("http://[::1]:8080"), "[::1]:8080", none, none, true),
        (Some("http://[::1]"), "[::1]", none, none, true),
        (Some("http://[::1]:8080"), "[::1]:8081", none, none, false),
        (Some("http://[2001:db8::1]:8080"), "[2001:db8::1]:8080", none, none, false),
        (Some("https://chat.example.com"), "gw:8080", &list, none, true),
        (Some("https://CHAT.example.com"), "gw:8080", &list, none, true),
        (Some("http://chat.example.com"), "gw:8080", &list, none, false),
        (Some("http://gw:8080"), "gw:8080", &list, &gw, false),
        (None, "gw:8080", &list, none, true),
    ];
    for (origin, host, allowed, hosts, ok) in cases {
        let result = origin::check(&with_origin(*origin, host), allowed, hosts);
        assert_eq!(
            result.is_ok(),
            *ok,
            "{origin:?} to {host} with {allowed:?} {hosts:?}"
        );
    }
    assert!(origin::invalid_entry("https://a.example:8443").is_none());
    assert!(origin::invalid_entry("a.example").is_some());
    assert!(origin::invalid_entry("https://a.example/path").is_some());
    assert!(origin::invalid_host("chat.example.com").is_none());
    assert!(origin::invalid_host("chat.example.com:443").is_some());
    assert!(origin::invalid_host("https://chat.example.com").is_some());
}

/// The development identity refuses a listener that is not loopback unless
/// `--insecure-dev-identity-on-network` is given; tokens may listen anywhere.
#[test]
fn the_dev_identity_stays_on_loopback() {
    let dev = Config {
        identity: IdentityConfig {
            insecure_dev_identity: true,
            ..Config::default().identity
        },
        ..Config::default()
    };
    let addr = |a: &str| a.parse().unwrap();
    let on = |config: &Config, kind: &str, a: &str| check_listener(config, kind, addr(a));
    assert!(on(&dev, QueryUser::KIND, "127.0.0.1:8080").is_ok());
    assert!(on(&dev, QueryUser::KIND, "[::1]:8080").is_ok());
    assert_eq!(
        on(&dev, QueryUser::KIND, "0.0.0.0:8080"),
        Err(IdentityError::DevIdentityOnNetwork(addr("0.0.0.0:8080")))
    );
    assert!(on(&dev, QueryUser::KIND, "[::]:8080").is_err());
    assert!(on(&dev, QueryUser::KIND, "192.0.2.1:8080").is_err());
    assert!(on(&dev, Tokens::KIND, "0.0.0.0:8080").is_ok());
    let network = Config {
        identity: IdentityConfig {
            insecure_dev_identity_on_network: true,
            ..dev.identity
        },
        ..dev
    };
    assert!(on(&network, QueryUser::KIND, "0.0.0.0:8080").is_ok());
    let alone = Config {
        identity: IdentityConfig {
            insecure_dev_identity_on_network: true,
            ..Config::default().identity
        },
        ..Config::default()
    };
    assert!(
        alone
            .validate()
            .unwrap_err()
            .join("; ")
            .contains("needs --insecure-dev-identity")
    );
}

/// A correctly signed token whose header names a critical extension (`crit`) is refused
/// (RFC 7515 §4.1.11: this gateway understands none); jsonwebtoken alone accepts it.
#[test]
fn critical_extensions_are_refused() {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let header = b64(&json!({"alg": "HS256", "typ": "JWT", "crit": ["bound"], "bound": 1}));
    let claims = b64(&json!({"sub": "a", "exp": now() + 600}));
    let message = format!("{header}.{claims}");
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .expect("sign");
    let token = format!("{message}.{signature}");
    assert!(matches!(
        tokens().verify(&token),
        Err(AuthError::Malformed(_))
    ));
}
