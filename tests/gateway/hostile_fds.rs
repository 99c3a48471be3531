//! The half-open-socket attack as the probe ran it: the transport as its own process with a
//! 64-file limit, 60 half-sent HTTP requests. Before `--max-sockets` and the header timeout
//! the requests took every file descriptor: `/readyz` and new clients timed out.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::chat;
use offpath_harness::{Proc, http, process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Under `ulimit -n 64`, 60 half-sent requests neither starve `/readyz` (operator port)
/// nor, once the header timeout has closed them, a new client of the public port.
#[tokio::test]
async fn half_sent_requests_cannot_take_the_last_file_descriptor() {
    let server = chat::nats_with_topology().await;
    let public = process::concrete_addr(([127, 0, 0, 1], 0).into()).expect("a free port");
    let ops = process::concrete_addr(([127, 0, 0, 1], 0).into()).expect("a free port");
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            r#"ulimit -n 64 && exec "$0" "$@""#,
            common::BIN,
            "transport",
            "--insecure-dev-identity",
        ])
        .arg(format!("--listen-addr={public}"))
        .arg(format!("--metrics-addr={ops}"))
        .args(["--nats-url", &server.url(), "--tenant=acme"])
        .args(["--max-sockets=30", "--header-timeout-ms=1000"])
        .env("OFFPATH_LOG", "warn");
    let mut transport = Proc::start("transport", command, ops).expect("spawn offpath transport");
    transport
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("the transport is ready");
    let mut slow = Vec::new();
    for _ in 0..60 {
        let mut tcp = tokio::net::TcpStream::connect(public)
            .await
            .expect("connect");
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(tcp);
    }
    let (status, body) = http::get(ops, "/readyz")
        .await
        .expect("/readyz answers while the public port is flooded");
    assert_eq!(status, 200, "{body}");
    for tcp in &mut slow {
        let mut buf = [0u8; 512];
        let closed = async { while !matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)) {} };
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("every half-sent request is closed");
    }
    let (status, page) = http::get(public, "/")
        .await
        .expect("a new client is served");
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );
    let (_, metrics) = http::get(ops, "/metrics").await.expect("/metrics");
    let closed = |reason: &str| {
        offpath_harness::scrape::metric(
            &metrics,
            "offpath_transport_sockets_closed_total",
            &format!(r#"reason="{reason}""#),
        )
    };
    assert_eq!(closed("max_sockets"), 30.0, "{metrics}");
    assert_eq!(closed("header_timeout"), 30.0, "{metrics}");
    let _ = transport.kill();
}
