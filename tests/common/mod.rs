//! Helpers shared by the integration tests: a real nats-server per test and a client.

#![allow(dead_code)] // each test binary uses a different subset

pub mod chat;

use offpath_harness::NatsServer;

/// Starts a real nats-server (random port, JetStream in a temp dir); panics with the
/// install command when the binary is missing.
pub fn nats() -> NatsServer {
    NatsServer::start().unwrap_or_else(|err| panic!("cannot start nats-server: {err}"))
}

/// Bytes each stream of a test topology may hold: small, because JetStream refuses a
/// stream whose `max_bytes` does not fit the server's storage (a share of the free disk),
/// and many test servers run at once.
pub const TEST_STREAM_BYTES: i64 = 64 * 1024 * 1024;

/// The documented topology with small streams (see [`TEST_STREAM_BYTES`]).
pub fn topology() -> offpath_protocol::topology::TopologyConfig {
    offpath_protocol::topology::TopologyConfig {
        request_max_bytes: TEST_STREAM_BYTES,
        verdict_max_bytes: TEST_STREAM_BYTES,
        dlq_max_bytes: TEST_STREAM_BYTES,
        ..Default::default()
    }
}

/// Connects a client to `server`.
pub async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .expect("connect to the test nats-server")
}

/// Runs `promtool check metrics` on a `/metrics` rendering; panics with its complaints, or
/// with how to install it when it is missing (Debian's `prometheus` package).
pub fn promtool_check(metrics: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run promtool ({err}): install Debian's `prometheus` package \
                 (apt-get install -y prometheus, or scripts/bootstrap --promtool)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused /metrics:\n{}{}\n--- /metrics ---\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
