//! The operator port under a flood of half-sent requests (the outside probe's slowloris,
//! which held 20,000 of them until the process ran out of file descriptors): past the cap
//! they are closed at once, the rest when their header time is up, and the port answers
//! again.

use std::time::{Duration, Instant};

use offpath_ops::{Endpoints, Prometheus, Readiness, Spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

static PROMETHEUS: Prometheus = Prometheus::new(Spec {
    seconds: &[0.1, 1.0],
    buckets: &[],
    describe: || metrics::describe_counter!("offpath_test_events_total", "Events"),
    register: || metrics::counter!("offpath_test_events_total").increment(0),
    version: "1.2.3",
    commit: "abc",
});

/// A full `GET path` on a fresh connection: the status line.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer.lines().next().unwrap_or_default().to_string()
}

/// 200 half-sent requests (more than the port serves at once) are each closed, at once or
/// within the header timeout (5 s) plus slack, not held open; then `/healthz` and
/// `/metrics` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_neither_block_nor_stay() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let endpoints = Endpoints::spawn(listener, &PROMETHEUS, Readiness::default);
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: ops\r\n")
            .await
            .expect("write");
        slow.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (n, stream) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buffer = [0u8; 256];
        // Closed: EOF (or an error answer, then EOF), never silence until the deadline.
        let closed = tokio::time::timeout(left, async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "half-sent request {n} still open after 15 s"
        );
    }
    let answered = tokio::time::timeout(Duration::from_secs(5), get(addr, "/healthz")).await;
    assert_eq!(answered.expect("/healthz answered"), "HTTP/1.1 200 OK");
    let answered = tokio::time::timeout(Duration::from_secs(5), get(addr, "/metrics")).await;
    assert_eq!(answered.expect("/metrics answered"), "HTTP/1.1 200 OK");
    endpoints.stop().await.expect("stop");
}
