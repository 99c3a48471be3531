//! Who may connect as whom, and from which page (issue 13, attack 3): a page on another site
//! is refused; with signed tokens configured, `?user=` means nothing and forged, expired,
//! unsigned or misdirected tokens are refused; a token's `sub` is the sender everyone sees
//! and its `rooms` claim is enforced; `offpath transport` will not start without choosing
//! an identity. The gateway runs in this process against a real nats-server.

use crate::common;
mod page_check;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::chat::{self, ChatClient, Transport, is};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offpath_harness::scrape;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

const WAIT: Duration = Duration::from_secs(30);
/// The gateway's HS256 secret in these tests (test-only; protects nothing).
const SECRET: &[u8] = b"identity-test-secret-32-bytes-or-more";
const OTHER_SECRET: &[u8] = b"a-different-secret-of-32-bytes-or-more";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: &Value, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

/// A valid token for `sub`, 10 minutes long, with `extra` claims.
fn token_for(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "exp": now() + 600, "aud": "chat"});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    token(&claims, SECRET)
}

/// The gateway with HS256 tokens for audience `chat`, `leeway` of clock skew.
async fn token_gateway(leeway: Duration) -> (offpath_harness::NatsServer, Transport) {
    let tokens = offpath_transport::Tokens::new(None, Some("chat".into()), leeway)
        .hs256_secret(SECRET, "test")
        .unwrap();
    let server = chat::nats_with_topology().await;
    let transport =
        Transport::start_with(&server, chat::transport_config(), Arc::new(tokens)).await;
    (server, transport)
}

fn request(url: String, headers: &[(&str, &str)]) -> Request {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName =
            name.parse().expect("header name");
        request
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    request
}

/// The HTTP status of a refused handshake (panics if the gateway accepted it).
async fn refused(request: Request) -> u16 {
    refusal(request).await.0
}

/// The HTTP status and body of a refused handshake (panics if the gateway accepted it).
async fn refusal(request: Request) -> (u16, String) {
    match ChatClient::connect_with(request).await {
        Ok(_) => panic!("the gateway accepted the connection"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(body).into_owned(),
            )
        }
        Err(other) => panic!("not an HTTP refusal: {other}"),
    }
}

/// A 401 names the kind of refusal only, never the token parser's words (which decoding
/// step or claim failed): before, a malformed token's body echoed the parser's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_body_names_the_refusal_not_the_parser() {
    let (_server, transport) = token_gateway(Duration::from_secs(5)).await;
    let ws = format!("ws://{}/ws", transport.public);
    let expired = token(
        &json!({"sub": "alice", "exp": now() - 120, "aud": "chat"}),
        SECRET,
    );
    let cases = [("abc.def", "malformed"), (expired.as_str(), "expired")];
    for (bad, reason) in cases {
        let bearer = format!("Bearer {bad}");
        let answer = refusal(request(ws.clone(), &[("authorization", &bearer)])).await;
        assert_eq!(
            answer,
            (401, format!("unauthenticated: {reason}\n")),
            "{bad}"
        );
    }
    let answer = refusal(request(ws, &[])).await;
    assert_eq!(answer, (401, "unauthenticated: missing\n".to_string()));
    transport.stop().await;
}

/// A page on another site (`Origin: http://evil.example`) cannot open a socket (403,
/// counted); the gateway's own page and non-browser clients (no `Origin`) can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_page_is_refused() {
    let (_server, transport) = chat::gateway(chat::transport_config()).await;
    let url = format!("ws://{}/ws?user=alice", transport.public);
    let evil = request(url.clone(), &[("origin", "http://evil.example")]);
    assert_eq!(refused(evil).await, 403);
    let own = format!("http://{}", transport.public);
    let mut alice = ChatClient::connect_with(request(url.clone(), &[("origin", &own)]))
        .await
        .expect("same-origin page connects");
    alice.join("lobby").await;
    ChatClient::connect_with(url)
        .await
        .expect("a client without Origin connects");
    let metrics = transport.metrics().await;
    let origin = r#"reason="origin""#;
    // At least: another test of this binary may refuse a page in the same process.
    assert!(scrape::metric(&metrics, "offpath_transport_disconnects_total", origin) >= 1.0);
    transport.stop().await;
}

/// With an allow-list, only the listed page may connect, even from the gateway's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_allow_list_is_enforced() {
    let config = offpath_transport::Config {
        identity: offpath_transport::IdentityConfig {
            allowed_origins: vec!["https://chat.example.com".into()],
            ..chat::transport_config().identity
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let url = format!("ws://{}/ws?user=alice", transport.public);
    let own = format!("http://{}", transport.public);
    assert_eq!(
        refused(request(url.clone(), &[("origin", &own)])).await,
        403
    );
    let listed = request(url, &[("origin", "https://chat.example.com")]);
    ChatClient::connect_with(listed)
        .await
        .expect("the listed page connects");
    transport.stop().await;
}

/// With tokens configured, `?user=alice` alone is refused (401), and so are an expired
/// token, one signed with another key, an unsigned `alg: none` one and one for another
/// audience; each refusal is counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_and_forged_identities_are_refused() {
    let (_server, transport) = token_gateway(Duration::from_secs(5)).await;
    let ws = format!("ws://{}/ws", transport.public);
    assert_eq!(refused(request(format!("{ws}?user=alice"), &[])).await, 401);
    let expired = token(
        &json!({"sub": "alice", "exp": now() - 120, "aud": "chat"}),
        SECRET,
    );
    let foreign = token(
        &json!({"sub": "alice", "exp": now() + 600, "aud": "chat"}),
        OTHER_SECRET,
    );
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"sub": "alice", "exp": now() + 600, "aud": "chat"}).to_string())
    );
    let elsewhere = token(
        &json!({"sub": "alice", "exp": now() + 600, "aud": "billing"}),
        SECRET,
    );
    for bad in [&expired, &foreign, &unsigned, &elsewhere] {
        let bearer = format!("Bearer {bad}");
        let status = refused(request(ws.clone(), &[("authorization", &bearer)])).await;
        assert_eq!(status, 401, "{bad}");
    }
    let metrics = transport.metrics().await;
    let refusals = "offpath_transport_auth_refusals_total";
    for reason in [
        "missing",
        "expired",
        "bad_signature",
        "malformed",
        "wrong_audience",
    ] {
        let labels = format!(r#"reason="{reason}""#);
        assert_eq!(scrape::metric(&metrics, refusals, &labels), 1.0, "{reason}");
    }
    transport.stop().await;
}

fn b64(text: &str) -> String {
    use std::fmt::Write;
    // base64url without padding, by hand: the root crate has no base64 dependency.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            let _ = write!(out, "{}", ALPHABET[index as usize] as char);
        }
    }
    out
}

/// A valid token connects as its `sub` (header or query parameter; a `?user=` beside it
/// changes nothing): the other members see that sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_speaks_as_its_sub() {
    let (_server, transport) = token_gateway(Duration::from_secs(5)).await;
    let ws = format!("ws://{}/ws", transport.public);
    let bearer = format!("Bearer {}", token_for("alice", json!({})));
    let mut alice = ChatClient::connect_with(request(ws.clone(), &[("authorization", &bearer)]))
        .await
        .expect("alice connects");
    let bob_url = format!(
        "{ws}?user=alice&access_token={}",
        token_for("bob", json!({}))
    );
    let mut bob = ChatClient::connect_with(bob_url)
        .await
        .expect("bob connects");
    alice.join("lobby").await;
    bob.join("lobby").await;
    let from_alice = alice.post("lobby", "hello", "a1").await;
    let from_bob = bob.post("lobby", "hi", "b1").await;
    let seen = bob.expect(WAIT, is("message", Some(&from_alice))).await;
    assert_eq!(seen.frame["sender"], "alice");
    let seen = alice.expect(WAIT, is("message", Some(&from_bob))).await;
    assert_eq!(
        seen.frame["sender"], "bob",
        "?user= beside a token is ignored"
    );
    transport.stop().await;
}

/// A token's `rooms` claim limits the rooms it may join: another room gets a
/// `forbidden_room` error frame (counted) and no membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_claim_is_enforced() {
    let (_server, transport) = token_gateway(Duration::from_secs(5)).await;
    let kid = token_for("kid", json!({"rooms": ["kids-*", "homework"]}));
    let url = format!("ws://{}/ws?access_token={kid}", transport.public);
    let mut kid = ChatClient::connect_with(url).await.expect("connects");
    kid.join("kids-1").await;
    kid.join("homework").await;
    kid.send(json!({"type": "join", "room": "lobby"})).await;
    let error = kid.expect(WAIT, |f| f["type"] == "error").await;
    assert_eq!(error.frame["code"], "forbidden_room");
    kid.say("lobby", "let me in", "x1").await;
    let error = kid.expect(WAIT, |f| f["type"] == "error").await;
    assert_eq!(error.frame["code"], "not_a_member");
    let metrics = transport.metrics().await;
    let code = r#"code="forbidden_room""#;
    let errors = "offpath_transport_frame_errors_total";
    assert_eq!(scrape::metric(&metrics, errors, code), 1.0);
    transport.stop().await;
}

/// A connection ends when its token expires: close code 1008, reason `token_expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_its_token_expires() {
    let (_server, transport) = token_gateway(Duration::ZERO).await;
    let short = token(
        &json!({"sub": "alice", "exp": now() + 2, "aud": "chat"}),
        SECRET,
    );
    let url = format!("ws://{}/ws?access_token={short}", transport.public);
    let mut alice = ChatClient::connect_with(url).await.expect("connects");
    alice.join("lobby").await;
    let close = alice.expect(WAIT, |f| f["type"] == "_close").await;
    assert_eq!(close.frame["code"], 1008);
    assert_eq!(close.frame["reason"], "token_expired");
    transport.stop().await;
}

/// `offpath transport` with neither token keys nor `--insecure-dev-identity` refuses to
/// start: status 64, one line naming both.
#[test]
fn the_gateway_refuses_to_start_without_an_identity() {
    let mut command = std::process::Command::new(common::BIN);
    command
        .args([
            "transport",
            "--listen-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--nats-url=nats://127.0.0.1:1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for name in [
        "OFFPATH_INSECURE_DEV_IDENTITY",
        offpath_transport::SECRET_ENV,
        "OFFPATH_TOKEN_HS256_FILE",
        "OFFPATH_TOKEN_PUBLIC_KEY_FILE",
    ] {
        command.env_remove(name);
    }
    // Without the check the gateway would serve (NATS or not): stop it after a while.
    let mut child = command.spawn().expect("run offpath transport");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("identity"))
        .unwrap_or("");
    assert!(
        line.contains("--insecure-dev-identity") && line.contains("--token-hs256-file"),
        "{stderr}"
    );
}

/// DNS rebinding: a page at `http://rebind.evil:<port>` whose name resolves to the gateway
/// sends `Origin` and `Host` both `rebind.evil:<port>`, same-origin by string; refused (403)
/// because `rebind.evil` is neither loopback nor in `--public-hosts`. A listed name works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_rebinding_page_is_refused() {
    let config = offpath_transport::Config {
        identity: offpath_transport::IdentityConfig {
            public_hosts: vec!["chat.internal".into()],
            ..chat::transport_config().identity
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let url = format!("ws://{}/ws?user=alice", transport.public);
    let port = transport.public.port();
    let evil = format!("rebind.evil:{port}");
    let rebound = request(
        url.clone(),
        &[("host", &evil), ("origin", &format!("http://{evil}"))],
    );
    assert_eq!(refused(rebound).await, 403);
    let listed = format!("chat.internal:{port}");
    let own = request(
        url,
        &[("host", &listed), ("origin", &format!("http://{listed}"))],
    );
    ChatClient::connect_with(own)
        .await
        .expect("a page on a --public-hosts name connects");
    transport.stop().await;
}

/// The development identity will not serve a listener that is not loopback (anyone on the
/// network could be anyone): `run` refuses at once, naming the escape hatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_identity_will_not_serve_a_network_address() {
    let public = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let operator = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Nothing listens there; the refusal comes before any use of NATS.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("127.0.0.1:1")
        .await
        .unwrap();
    let run = offpath_transport::run(
        chat::transport_config(),
        client,
        offpath_transport::Listeners { public, operator },
        Arc::new(offpath_transport::QueryUser),
        std::future::pending(),
    );
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run refuses instead of serving");
    match result {
        Err(offpath_transport::TransportError::Config(problems)) => {
            let problem = problems.join("; ");
            assert!(
                problem.contains("--insecure-dev-identity-on-network"),
                "{problem}"
            )
        }
        other => panic!("expected a configuration refusal, got {other:?}"),
    }
}

/// `offpath transport` with an identity provider's public key and no `--token-audience`
/// refuses to start (status 64, one line): a token that provider issued for another app
/// would otherwise be accepted here, with every room.
#[test]
fn public_keys_without_an_audience_refuse_to_start() {
    let dir = std::env::temp_dir().join(format!("offpath-ident-aud-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("ed.pem");
    std::fs::write(
        &key,
        "-----BEGIN PUBLIC KEY-----\n\
         MCowBQYDK2VwAyEAx1pHLLQcvRJYm6GTt0ubnPelvN4ISSUe4SUOR5KYva4=\n\
         -----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "transport",
            "--listen-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--nats-url=nats://127.0.0.1:1",
        ])
        .arg(format!("--token-public-key-file={}", key.display()))
        .env_remove("OFFPATH_TOKEN_AUDIENCE")
        .env_remove("OFFPATH_INSECURE_DEV_IDENTITY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run offpath transport");
    let out = wait_or_kill(out, Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--token-audience"), "{stderr}");
}

/// The child's output once it exits, or after `limit` (then killed: it was serving).
fn wait_or_kill(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

/// `offpath transport --insecure-dev-identity` and `offpath up` (which passes it) on
/// `0.0.0.0` refuse to start with status 64, before touching NATS or starting children.
#[test]
fn the_launchers_keep_the_dev_identity_on_loopback() {
    for args in [
        &[
            "transport",
            "--insecure-dev-identity",
            "--metrics-addr=127.0.0.1:0",
        ][..],
        &["up"][..],
    ] {
        let child = std::process::Command::new(common::BIN)
            .args(args)
            .args(["--listen-addr=0.0.0.0:0", "--nats-url=nats://127.0.0.1:1"])
            .env_remove("OFFPATH_INSECURE_DEV_IDENTITY_ON_NETWORK")
            .env_remove("OFFPATH_TRANSPORT_ARGS")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run offpath");
        let out = wait_or_kill(child, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--insecure-dev-identity-on-network"),
            "{stderr}"
        );
    }
}
