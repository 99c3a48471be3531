//! Hostile clients (issue 13, attacks 4 and 5): sockets that never finish a request,
//! websockets that go silent, one client taking every slot, floods of cheap frames,
//! control and bidi characters, duplicate JSON keys. Each test failed on the `main` before
//! the limits existed. Real nats-server, transport in this process, no moderator.

use crate::common;

use offpath_ops::cli::Millis;
use std::time::Duration;

use crate::raw;
use common::chat::{self, is};
use futures::{SinkExt, StreamExt};
use offpath_harness::{http, scrape};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

/// 60 half-sent HTTP requests (and silent sockets): past `--max-sockets` the extra ones
/// are closed at once, the rest after the header timeout; `/readyz` answers meanwhile and a new client is served
/// afterwards; every socket is counted from accept to close.
#[tokio::test]
async fn half_sent_requests_are_closed_and_do_not_hold_the_door() {
    let config = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            max_sockets: 40,
            header_timeout: Millis::new(500),
            handshake_timeout: Millis::new(1_000),
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let mut slow = Vec::new();
    for i in 0..60 {
        let mut tcp = tokio::net::TcpStream::connect(transport.public)
            .await
            .expect("connect");
        // Half send part of a request, half nothing at all.
        if i % 2 == 0 {
            tcp.write_all(b"GET /ws?user=slow HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("half a request");
        }
        slow.push(tcp);
    }
    let (status, _) = http::get(transport.ops, "/readyz").await.expect("/readyz");
    assert_eq!(
        status, 200,
        "/readyz answers while the public port is flooded"
    );
    for (i, tcp) in slow.iter_mut().enumerate() {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
        match read {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(n)) => {
                // hyper may answer 408 before closing; the socket must still end.
                let rest = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf));
                assert!(
                    matches!(rest.await, Ok(Ok(0) | Err(_))),
                    "socket {i} still open after {n} bytes"
                );
            }
            Err(_) => panic!("half-sent request {i} still open after 10 s"),
        }
    }
    let mut carol = transport.joined("carol", "lobby").await;
    carol.post("lobby", "made it in", "c1").await;
    // The handshake timeout ends at the upgrade: a websocket outlives it.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    carol.post("lobby", "still in", "c2").await;
    let metrics = transport.metrics().await;
    let closed = |reason: &str| {
        scrape::metric(
            &metrics,
            "offpath_transport_sockets_closed_total",
            &format!(r#"reason="{reason}""#),
        )
    };
    assert_eq!(closed("max_sockets"), 20.0, "{metrics}");
    assert_eq!(
        closed("header_timeout") + closed("handshake_timeout"),
        40.0,
        "{metrics}"
    );
    assert!(closed("header_timeout") >= 1.0, "{metrics}");
    assert_eq!(
        scrape::metric(&metrics, "offpath_transport_sockets", ""),
        1.0
    );
    transport.stop().await;
}

/// A websocket that answers no ping is closed after the idle timeout (1001
/// `idle_timeout`, counted); a client that reads (and so answers pings) stays connected.
#[tokio::test]
async fn silent_websocket_is_closed_after_the_idle_timeout() {
    let config = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            ping_interval: Millis::new(250),
            idle_timeout: Millis::new(1_000),
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let mut live = transport.joined("alice", "lobby").await;
    let mut silent = raw::silent(transport.public, "mallory").await;
    let ended = raw::silent_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(
        ended.close,
        Some((1001, "idle_timeout".to_string())),
        "{ended:?}"
    );
    assert!(ended.pings >= 1, "the gateway pinged first: {ended:?}");
    live.post("lobby", "still here", "c1").await;
    let metrics = transport.metrics().await;
    scrape::assert_sums(
        &metrics,
        &[
            (
                "offpath_transport_disconnects_total",
                r#"reason="idle_timeout""#,
                1.0,
            ),
            ("offpath_transport_connections", "", 1.0),
        ],
    );
    transport.stop().await;
}

/// One address cannot fill `--max-sockets` with silent sockets: past twice its
/// `--max-connections-per-ip` they are closed at once (counted), and a client from another
/// address is served meanwhile.
#[tokio::test]
async fn one_address_cannot_fill_the_socket_cap() {
    let config = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            max_sockets: 100,
            max_connections_per_ip: 4,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        let tcp = tokio::net::TcpStream::connect(transport.public)
            .await
            .expect("connect");
        silent.push(tcp);
    }
    let refused = |_: u16, metrics: &str| {
        let name = "offpath_transport_sockets_closed_total";
        scrape::metric(metrics, name, r#"reason="max_sockets_per_ip""#) >= 12.0
    };
    // Every socket accepted and the extra ones closed; then each kept one stays silent.
    http::wait_until(transport.ops, "/metrics", WAIT, refused)
        .await
        .expect("the extra sockets are refused");
    let mut closed = 0;
    for tcp in &mut silent {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 12, "20 sockets from one address, 8 kept");
    let mut other = raw::connect_from(transport.public, [127, 0, 0, 2].into(), "bob").await;
    other
        .send(Message::text(r#"{"type":"join","room":"lobby"}"#))
        .await
        .expect("send");
    let joined = tokio::time::timeout(WAIT, other.next()).await;
    assert!(
        matches!(joined, Ok(Some(Ok(Message::Text(ref t)))) if t.contains("joined")),
        "another address is served: {joined:?}"
    );
    let metrics = transport.metrics().await;
    let per_ip = scrape::metric(
        &metrics,
        "offpath_transport_sockets_closed_total",
        r#"reason="max_sockets_per_ip""#,
    );
    assert_eq!(per_ip, 12.0, "{metrics}");
    drop(silent);
    transport.stop().await;
}

/// Connects `user` with `headers` and returns how the gateway answered: the error code of
/// its first frame (if any) and the close.
async fn refusal(
    transport: &chat::Transport,
    user: &str,
    headers: &[(&str, &str)],
) -> (Option<String>, Option<(u16, String)>) {
    let mut ws = raw::connect(transport.public, user, headers).await;
    let ended = raw::until_closed(&mut ws, Duration::from_secs(5)).await;
    let code = ended
        .frames
        .first()
        .map(|f| f["code"].as_str().unwrap_or_default().to_string());
    (code, ended.close)
}

/// One user cannot take every slot (`--max-connections-per-user`), nor one address
/// (`--max-connections-per-ip`); `X-Forwarded-For` is believed only when the operator
/// names it, and then tells clients behind one proxy apart.
#[tokio::test]
async fn one_address_or_user_cannot_take_every_slot() {
    let config = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            max_connections: 20,
            max_connections_per_ip: 4,
            max_connections_per_user: 2,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (server, transport) = chat::gateway(config.clone()).await;
    let _alice = [
        transport.client("alice").await,
        transport.client("alice").await,
    ];
    let per_user = Some((1013, "max_connections_per_user".to_string()));
    let full = Some("too_many_connections".to_string());
    assert_eq!(
        refusal(&transport, "alice", &[]).await,
        (full.clone(), per_user)
    );
    let _others = [
        transport.client("bob").await,
        transport.client("carol").await,
    ];
    let per_ip = Some((1013, "max_connections_per_ip".to_string()));
    let spoofed = [("x-forwarded-for", "203.0.113.5")];
    assert_eq!(
        refusal(&transport, "dave", &spoofed).await,
        (full.clone(), per_ip.clone()),
        "the header is not believed unless the operator says a proxy sets it"
    );
    let metrics = transport.metrics().await;
    scrape::assert_sums(
        &metrics,
        &[
            (
                "offpath_transport_disconnects_total",
                r#"reason="max_connections_per_user""#,
                1.0,
            ),
            (
                "offpath_transport_disconnects_total",
                r#"reason="max_connections_per_ip""#,
                1.0,
            ),
            ("offpath_transport_connections", "", 4.0),
        ],
    );
    transport.stop().await;

    let behind_proxy = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            client_ip_header: Some("X-Forwarded-For".into()),
            ..config.limits
        },
        ..config
    };
    let transport = chat::Transport::start(&server, behind_proxy).await;
    let mut held = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        held.push(raw::connect(transport.public, user, &[("x-forwarded-for", "10.0.0.1")]).await);
    }
    let (code, close) = refusal(
        &transport,
        "u5",
        &[("x-forwarded-for", "10.9.9.9, 10.0.0.1")],
    )
    .await;
    assert_eq!(
        (code, close),
        (full, per_ip),
        "the proxy's last address counts"
    );
    let mut dave = raw::connect(transport.public, "dave", &spoofed).await;
    dave.send(Message::text(r#"{"type":"join","room":"lobby"}"#))
        .await
        .expect("send");
    let joined = tokio::time::timeout(WAIT, dave.next()).await;
    assert!(
        matches!(joined, Ok(Some(Ok(Message::Text(ref t)))) if t.contains("joined")),
        "another client behind the proxy is served: {joined:?}"
    );
    drop(held);
    transport.stop().await;
}

/// A flood of `join`/`leave`/invalid frames is charged to the frame rate: one error frame,
/// every refused frame counted, and the connection closed (1008 `flood`); a client that
/// overshoots briefly and slows down keeps its connection.
#[tokio::test]
async fn a_flood_of_cheap_frames_is_limited_and_closed() {
    let config = offpath_transport::Config {
        limits: offpath_transport::LimitsConfig {
            rate_per_second: 5.0,
            rate_burst: 10.0,
            frame_rate_per_second: 5.0,
            frame_burst: 10.0,
            flood_close_after: 20,
            ..chat::transport_config().limits
        },
        ..chat::transport_config()
    };
    let (_server, transport) = chat::gateway(config).await;
    let mut mallory = raw::connect(transport.public, "mallory", &[]).await;
    for i in 0..200 {
        let frame = match i % 3 {
            0 => r#"{"type":"join","room":"lobby"}"#,
            1 => r#"{"type":"leave","room":"lobby"}"#,
            _ => "not json",
        };
        if mallory.send(Message::text(frame)).await.is_err() {
            break;
        }
    }
    let ended = raw::until_closed(&mut mallory, Duration::from_secs(10)).await;
    assert_eq!(ended.close, Some((1008, "flood".to_string())), "{ended:?}");
    let limited: Vec<_> = ended
        .frames
        .iter()
        .filter(|f| f["code"] == "rate_limited")
        .collect();
    assert_eq!(
        limited.len(),
        1,
        "one error frame per run: {:?}",
        ended.frames
    );
    let answered = ended.frames.len() - 1;
    assert!(
        answered < 30,
        "{answered} frames handled of 200: {:?}",
        ended.frames
    );

    let mut bob = transport.client("bob").await;
    for _ in 0..15 {
        bob.send(json!({"type": "leave", "room": "lobby"})).await;
    }
    bob.expect(WAIT, |f| f["code"] == "rate_limited").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    bob.join("lobby").await;

    let metrics = transport.metrics().await;
    let limited = scrape::metric(&metrics, "offpath_transport_frames_limited_total", "");
    assert!(limited >= 21.0 + 1.0, "{limited}");
    scrape::assert_sums(
        &metrics,
        &[(
            "offpath_transport_disconnects_total",
            r#"reason="flood""#,
            1.0,
        )],
    );
    transport.stop().await;
}

/// Control characters are refused (`invalid_text`: 4,096 NULs reach nobody); bidi
/// controls and zero-width spaces are stripped from what members and the moderator see;
/// ZWJ emoji survive; a frame with a key twice is refused.
#[tokio::test]
async fn control_and_bidi_characters_and_duplicate_keys() {
    let (server, transport) = chat::gateway(chat::transport_config()).await;
    let nats = offpath_harness::testing::connect(&server).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    for text in [
        "\0".repeat(4096),
        "a\u{1b}[2Jb".into(),
        "bell\u{7}".into(),
        "c1\u{85}".into(),
    ] {
        alice.say("lobby", &text, "bad").await;
        let error = alice.expect(WAIT, is("error", None)).await.frame;
        assert_eq!(error["code"], "invalid_text", "{text:?}: {error}");
    }
    let duplicate = r#"{"type":"send","room":"lobby","text":"hi","text":"you idiot"}"#;
    alice.send_raw(Message::text(duplicate)).await;
    let error = alice.expect(WAIT, is("error", None)).await.frame;
    assert_eq!(error["code"], "invalid_json", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate key")
    );

    let family = "\u{1f469}\u{200d}\u{1f467}";
    let sent = format!("\u{202e}id\u{200b}iot\u{202c} \u{2066}ok\u{2069}\u{feff} {family}\tend");
    let id = alice.post("lobby", &sent, "good").await;
    let message = bob.expect(WAIT, is("message", Some(&id))).await.frame;
    let shown = format!("idiot ok {family}\tend");
    assert_eq!(message["text"], shown.as_str());
    let others = bob.drain(Duration::from_millis(300)).await;
    assert!(
        others.iter().all(|r| r.frame["type"] != "message"),
        "refused texts reached a member: {others:?}"
    );
    // The request as stored in MODERATION (no moderator runs here to take it): the only
    // one, since every other text was refused before moderation.
    let stream = async_nats::jetstream::new(nats)
        .get_stream(offpath_protocol::subject::MODERATION_STREAM)
        .await
        .expect("MODERATION");
    let deadline = tokio::time::Instant::now() + WAIT;
    let stored = loop {
        match stream
            .get_last_raw_message_by_subject("offpath.req.acme")
            .await
        {
            Ok(stored) => break stored,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("no moderation request stored: {err}"),
        }
    };
    assert_eq!(stored.sequence, 1, "a refused text was sent to moderation");
    let request: serde_json::Value = serde_json::from_slice(&stored.payload).expect("JSON");
    assert_eq!(
        request["text"],
        shown.as_str(),
        "the moderator judges what members see"
    );
    transport.stop().await;
}

/// The moderator's request decoder refuses a payload with a key twice (`duplicate_key`,
/// a dead-letter reason), wherever it is; before, the last `text` silently won.
#[test]
fn the_request_decoder_refuses_duplicate_keys() {
    let payload = br#"{"v":1,"id":"m1","tenant":"acme","room":"lobby","sender":"alice","text":"hello","text":"you idiot","sent_at_ms":1}"#;
    let err = offpath_protocol::decode_request(
        "offpath.req.acme",
        payload,
        &offpath_protocol::Limits::default(),
    )
    .expect_err("a duplicate key is refused");
    assert_eq!(err.reason(), "duplicate_key", "{err}");
    assert!(offpath_protocol::DecodeError::REASONS.contains(&"duplicate_key"));
}

/// By default a frame larger than 64 KiB closes the connection (1009) instead of being
/// buffered whole: 2 MiB per connection let 300 half-sent frames add 510 MiB to the
/// gateway (outside probe). A text just over the text limit still gets an error frame.
#[tokio::test]
async fn a_large_frame_is_not_buffered() {
    let (_server, transport) = chat::gateway(chat::transport_config()).await;
    let (mut alice, _bob) = transport.alice_and_bob("lobby").await;
    let over_text = json!({"type": "send", "room": "lobby", "text": "x".repeat(8 << 10)});
    alice.send_raw(Message::text(over_text.to_string())).await;
    let error = alice.expect(WAIT, is("error", None)).await.frame;
    assert_eq!(error["code"], "text_too_large", "{error}");
    let huge = json!({"type": "send", "room": "lobby", "text": "x".repeat(100 << 10)});
    alice.send_raw(Message::text(huge.to_string())).await;
    let closed = alice.expect(WAIT, |f| f["type"] == "_close").await.frame;
    assert_eq!(closed["code"], 1009, "{closed}");
    transport.stop().await;
}

/// The chat page, its script and style, and a refused handshake carry a CSP without inline
/// code or framing, `X-Frame-Options: DENY`, `nosniff` and `no-referrer`; the page has no
/// inline code the CSP would block. (Before, any site could frame the chat page.)
#[tokio::test]
async fn chat_page_responses_carry_the_security_headers() {
    let (_server, transport) = chat::gateway(chat::transport_config()).await;
    for (path, status, kind) in [
        ("/", 200, "text/html"),
        ("/chat.js", 200, "text/javascript"),
        ("/connect.js", 200, "text/javascript"),
        ("/chat.css", 200, "text/css"),
        ("/ws", 400, ""),
        ("/nowhere", 404, ""),
    ] {
        let answer = http::Request::new("GET", path).send(transport.public).await;
        let answer = answer.expect("the gateway answers");
        assert_eq!(answer.status, status, "{path}: {answer:?}");
        common::assert_security_headers(path, &answer);
        let content_type = answer.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
    }
    let page = http::Request::new("GET", "/").send(transport.public).await;
    common::assert_no_inline_code("the chat page", &page.expect("/").body);
    transport.stop().await;
}
