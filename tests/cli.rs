//! The `offpath` binary as an operator runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_offpath");

/// A bad flag exits with status 64 (EX_USAGE) and a message, not a panic.
#[test]
fn bad_configuration_exits_64() {
    let out = Command::new(BIN)
        .args(["up", "--no-such-flag"])
        .output()
        .expect("run offpath");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = Command::new(BIN)
        .args(["up", "--local-nats-port", "x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
}

/// `offpath doctor` finds nats-server and ONNX Runtime after the bootstrap.
#[test]
fn doctor_finds_the_bootstrapped_tools() {
    let out = Command::new(BIN)
        .arg("doctor")
        .output()
        .expect("run offpath");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "doctor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nats-server: /"), "{stdout}");
    assert!(stdout.contains("libonnxruntime.so"), "{stdout}");
}

/// `offpath up` with no NATS URL starts its own nats-server, puts the topology in place,
/// and on SIGTERM stops it and exits 0.
#[tokio::test]
async fn up_starts_local_nats_with_topology_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args([
            "--log-json",
            "up",
            "--metrics-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env_remove("OFFPATH_NATS_URL")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn offpath up");
    let stderr = child.stderr.take().expect("stderr");
    // Read the log on a thread until the process exits (a closed pipe would fail its
    // writes); hand over the URL from the "offpath is up" line and keep the rest.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("offpath is up")
                && let Some(url) = event["fields"]["url"].as_str()
            {
                let _ = url_tx.send(url.to_string());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    let url = url_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("offpath up reported its URL");

    let client = async_nats::connect(&url)
        .await
        .expect("connect to the local server");
    let js = jetstream::new(client);
    let mut names: Vec<String> = js.stream_names().map(|n| n.expect("name")).collect().await;
    names.sort();
    assert_eq!(names, ["MODERATION", "MODERATION_DLQ", "VERDICTS"]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(status.expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "offpath up did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = log.join().expect("log reader");
    assert!(exit.success(), "exit status {exit}; log:\n{log}");
    assert!(
        data.path().join("jetstream").exists(),
        "JetStream data kept in --data-dir"
    );
}
