//! The `offpath` binary as an operator runs it.

mod common;

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

/// `offpath up` with no NATS URL starts its own nats-server with the topology, a moderator
/// and a transport as child processes; a chat message goes through the whole pipeline;
/// on SIGTERM it stops them all and exits 0.
#[tokio::test]
async fn up_runs_the_pipeline_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args([
            "--log-json",
            "up",
            "--moderator-metrics-addr=127.0.0.1:0",
            "--transport-metrics-addr=127.0.0.1:0",
            "--listen-addr=127.0.0.1:0",
            "--transport-arg=--tenant=acme",
            "--data-dir",
        ])
        .arg(data.path())
        .env_remove("OFFPATH_NATS_URL")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn offpath up");
    let stderr = child.stderr.take().expect("stderr");
    // Read the log on a thread until the process exits (a closed pipe would fail its
    // writes); hand over the "offpath is up" event and keep the rest.
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("offpath is up")
            {
                let _ = up_tx.send(event["fields"].clone());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    let up = up_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("offpath up reported it is up");
    let url = up["url"].as_str().expect("url");

    let client = async_nats::connect(url)
        .await
        .expect("connect to the local server");
    let js = jetstream::new(client);
    let mut names: Vec<String> = js.stream_names().map(|n| n.expect("name")).collect().await;
    names.sort();
    assert_eq!(names, ["MODERATION", "MODERATION_DLQ", "VERDICTS"]);

    let websocket = up["websocket"].as_str().expect("websocket address");
    let addr = websocket
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host:port")
        .parse()
        .expect("socket address");
    let mut alice = common::chat::ChatClient::connect(addr, "alice").await;
    alice.join("lobby").await;
    alice
        .say("lobby", "you are a stupid worthless idiot", "c1")
        .await;
    let wait = Duration::from_secs(30);
    let id = alice
        .expect(wait, common::chat::is("ack", None))
        .await
        .frame["id"]
        .as_str()
        .expect("id")
        .to_string();
    alice
        .expect(wait, common::chat::is("retract", Some(&id)))
        .await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(status.expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(45);
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
    let stopped = log
        .lines()
        .filter(|line| line.contains(r#""message":"stopped""#))
        .count();
    assert_eq!(stopped, 2, "transport and moderator stopped; log:\n{log}");
    assert!(
        data.path().join("jetstream").exists(),
        "JetStream data kept in --data-dir"
    );
}
