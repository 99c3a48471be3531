//! The chat page's question before it opens a socket (issue 27, item 5): `POST /ws/check`
//! with the credentials the socket would carry answers `{"ok":true}` or
//! `{"ok":false,"reason":…}` in the gateway's own refusal terms, with the status the upgrade
//! would get, under the same Origin and `Host` rules, counted as a refused upgrade, never
//! echoing the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use offpath_harness::http::Request;
use offpath_harness::scrape;
use serde_json::{Value, json};

use super::common::chat::{self, Transport};
use super::{OTHER_SECRET, SECRET, b64, now, token, token_for};

/// A gateway with HS256 tokens for audience `chat` from issuer `issuer`.
async fn issuer_gateway() -> (offpath_harness::NatsServer, Transport) {
    let tokens = offpath_transport::Tokens::new(
        Some("issuer".into()),
        Some("chat".into()),
        Duration::from_secs(5),
    )
    .hs256_secret(SECRET, "test")
    .unwrap();
    let server = chat::nats_with_topology().await;
    let transport =
        Transport::start_with(&server, chat::transport_config(), Arc::new(tokens)).await;
    (server, transport)
}

/// `POST /ws/check<query>` with `headers`: status and the JSON answer (panics on another
/// body: the answer is always JSON, never the token or the parser's words).
async fn check(addr: SocketAddr, query: &str, headers: &[&str]) -> (u16, Value) {
    let path = format!("/ws/check{query}");
    let answer = Request::new("POST", &path)
        .headers(headers)
        .send(addr)
        .await
        .expect("an answer");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{answer:?}"
    );
    let body: Value = serde_json::from_str(&answer.body).expect("JSON");
    (answer.status, body)
}

/// Every refusal a token can meet is answered with its reason (401, the same word as
/// `auth_refusals_total{reason}`), a good token with `{"ok":true}`; the answer holds
/// nothing else (not the token, not the user), and each refusal is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_check_names_each_refusal() {
    let (_server, transport) = issuer_gateway().await;
    let addr = transport.public;
    let good = json!({"sub": "alice", "exp": now() + 600, "aud": "chat", "iss": "issuer"});
    let with = |change: Value| {
        let mut claims = good.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(change.as_object().cloned().unwrap_or_default());
        claims
    };
    let rs256_header = b64(r#"{"alg":"RS256","typ":"JWT"}"#);
    let cases: Vec<(&str, String)> = vec![
        ("expired", token(&with(json!({"exp": now() - 120})), SECRET)),
        (
            "not_yet_valid",
            token(&with(json!({"nbf": now() + 600})), SECRET),
        ),
        (
            "wrong_audience",
            token(&with(json!({"aud": "billing"})), SECRET),
        ),
        (
            "wrong_issuer",
            token(&with(json!({"iss": "someone"})), SECRET),
        ),
        ("bad_signature", token(&good, OTHER_SECRET)),
        (
            "invalid_user",
            token(&with(json!({"sub": "Bob Smith"})), SECRET),
        ),
        ("malformed", "abc.def".to_string()),
        (
            "unknown_algorithm",
            format!("{rs256_header}.{}.c2ln", b64(&good.to_string())),
        ),
    ];
    for (reason, bad) in &cases {
        let bearer = format!("Authorization: Bearer {bad}");
        let answer = check(addr, "", &[&bearer]).await;
        assert_eq!(
            answer,
            (401, json!({"ok": false, "reason": reason})),
            "{bad}"
        );
        // The query parameter, as the socket takes it, is answered the same.
        let answer = check(addr, &format!("?access_token={bad}"), &[]).await;
        assert_eq!(answer.1["reason"], *reason);
    }
    let answer = check(addr, "?user=alice", &[]).await;
    assert_eq!(answer, (401, json!({"ok": false, "reason": "missing"})));
    let fine = format!("Authorization: Bearer {}", token(&good, SECRET));
    assert_eq!(check(addr, "", &[&fine]).await, (200, json!({"ok": true})));
    let metrics = transport.metrics().await;
    for (reason, _) in &cases {
        let labels = format!(r#"reason="{reason}""#);
        let counted = scrape::metric(&metrics, "offpath_transport_auth_refusals_total", &labels);
        assert_eq!(counted, 2.0, "{reason}: header and query each counted");
    }
    transport.stop().await;
}

/// The check obeys the socket's Origin and `Host` rules: a foreign page and a DNS-rebinding
/// page get 403 `origin` before any credential is looked at; the gateway's own page is
/// answered, with the security headers of every answer. A `GET` (which browsers send
/// without `Origin` to their own site) is not the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_check_keeps_the_origin_rule() {
    let (_server, transport) = chat::gateway(chat::transport_config()).await;
    let addr = transport.public;
    let evil = "Origin: http://evil.example";
    let answer = check(addr, "?user=alice", &[evil]).await;
    assert_eq!(answer, (403, json!({"ok": false, "reason": "origin"})));
    let port = addr.port();
    let rebound = [
        format!("Host: rebind.evil:{port}"),
        format!("Origin: http://rebind.evil:{port}"),
    ];
    let rebound: Vec<&str> = rebound.iter().map(String::as_str).collect();
    // The harness's own Host line comes first; hyper takes the first, so send raw.
    let answer = raw_check(addr, &rebound).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let own = format!("Origin: http://{addr}");
    assert_eq!(
        check(addr, "?user=alice", &[&own]).await,
        (200, json!({"ok": true}))
    );
    let answer = Request::new("POST", "/ws/check?user=alice")
        .send(addr)
        .await;
    super::common::assert_security_headers("/ws/check", &answer.expect("an answer"));
    let get = Request::new("GET", "/ws/check?user=alice").send(addr).await;
    assert_eq!(get.expect("an answer").status, 405);
    transport.stop().await;
}

/// A `POST /ws/check` with exactly `headers` (its own `Host` among them): the raw answer.
async fn raw_check(addr: SocketAddr, headers: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = "POST /ws/check?user=alice HTTP/1.1\r\nConnection: close\r\n".to_string();
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("answered")
        .expect("read");
    answer
}

/// On the development identity: a name the gateway's rule refuses (`Bob Smith`, `Zoë`, 65
/// bytes) is `invalid_user`, a token instead of a name is `missing`, a 64-byte name is
/// fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_check_on_the_development_identity() {
    let (_server, transport) = chat::gateway(chat::transport_config()).await;
    let addr = transport.public;
    for name in ["Bob%20Smith", "Zo%C3%AB", &"n".repeat(65)] {
        let answer = check(addr, &format!("?user={name}"), &[]).await;
        assert_eq!(
            answer,
            (401, json!({"ok": false, "reason": "invalid_user"}))
        );
    }
    let query = format!("?access_token={}", token_for("alice", json!({})));
    let answer = check(addr, &query, &[]).await;
    assert_eq!(answer, (401, json!({"ok": false, "reason": "missing"})));
    let long = "n".repeat(64);
    assert_eq!(
        check(addr, &format!("?user={long}"), &[]).await,
        (200, json!({"ok": true}))
    );
    transport.stop().await;
}
