//! The `offpath` binary as an operator runs it.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use offpath_harness::testing;
use offpath_protocol::permissions::Role;

use common::{BIN, output_within, run_with_env};

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
    let out = output_within(&["doctor"], &[], Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "doctor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nats-server: /"), "{stdout}");
    assert!(stdout.contains("libonnxruntime.so"), "{stdout}");
    assert!(stdout.contains("models/minilm-insult"), "{stdout}");
}

/// `offpath doctor --role` checks what that host needs: a moderator host ONNX Runtime and
/// its models (a missing model is named) but not nats-server, a transport host nothing
/// local (not even ONNX Runtime).
#[test]
fn doctor_is_role_aware() {
    let out = output_within(
        &["doctor", "--role=moderator"],
        &[],
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("nats-server"), "{stdout}");
    assert!(
        stdout.contains("libonnxruntime.so") && stdout.contains("model: "),
        "{stdout}"
    );
    let out = output_within(
        &["doctor", "--role=moderator", "--model=/nonexistent/model"],
        &[],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/nonexistent/model"),
        "{stderr}"
    );
    let out = output_within(
        &["doctor", "--role=transport"],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `offpath up` with no NATS URL starts its own nats-server with the topology, a moderator
/// and a transport as child processes; a chat message goes through the whole pipeline;
/// on SIGTERM it stops them all and exits 0.
#[tokio::test]
async fn up_runs_the_pipeline_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let reviewers = data.path().join("reviewers.toml");
    let digest = offpath_protocol::text_sha256("rita-token");
    std::fs::write(&reviewers, format!("[reviewers]\nrita = \"{digest}\"\n")).expect("write");
    let reviewers = format!("--reviewers={}", reviewers.display());
    let extra = [
        "--transport-arg=--tenant=acme",
        &reviewers,
        "--review-addr=127.0.0.1:0",
    ];
    let mut child = common::up(data.path(), &extra)
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
    // The operator kit (deploy/: alert rules, dashboard) reads only metrics these export.
    crate::kit::assert_kit_reads_exported_names(&scrape_stack(&up).await);

    assert!(
        async_nats::connect(url).await.is_err(),
        "the local server accepted an anonymous client"
    );
    let admin = offpath_harness::secure::up_credentials(data.path(), &Role::Topology)
        .expect("the topology password in the server's config");
    let client = admin
        .connect(url)
        .await
        .expect("connect to the local server");
    let js = jetstream::new(client);
    let mut names: Vec<String> = js.stream_names().map(|n| n.expect("name")).collect().await;
    names.sort();
    // The seven streams (two request lanes, the review queue and its audit trail, the
    // senders' state), and the policy bucket's.
    assert_eq!(
        names,
        [
            "AUDIT",
            "KV_offpath-policies",
            "MODERATION",
            "MODERATION_DLQ",
            "MODERATION_INTERACTIVE",
            "REVIEW",
            "SENDERS",
            "VERDICTS"
        ]
    );

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
    // The reviewers' console runs too, logged in as its own `reviewer` user: ready means
    // it read REVIEW and AUDIT, which only that user (and topology) may.
    let console: std::net::SocketAddr = up["review"]
        .as_str()
        .expect("the console's address")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("socket address");
    let auth = ["Authorization: Bearer rita-token"];
    let (status, queue) = offpath_harness::http::send(console, "GET", "/api/queue", &auth, "")
        .await
        .expect("the console answers");
    assert_eq!(
        (status, queue.as_str()),
        (200, "[]"),
        "the blocked insult is not queued"
    );

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
    assert_eq!(
        stopped, 3,
        "console, transport and moderator stopped; log:\n{log}"
    );
    assert!(
        data.path().join("jetstream").exists(),
        "JetStream data kept in --data-dir"
    );
}

/// The `max_bytes` of the five streams `--stream-max-bytes` sets directly (the interactive
/// lane gets an eighth of `MODERATION`'s).
async fn stream_max_bytes(url: &str) -> Vec<i64> {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
    let mut sizes = Vec::new();
    for name in [
        "MODERATION",
        "VERDICTS",
        "MODERATION_DLQ",
        "REVIEW",
        "AUDIT",
        "SENDERS",
    ] {
        let mut stream = js.get_stream(name).await.expect("stream exists");
        sizes.push(stream.info().await.expect("info").config.max_bytes);
    }
    sizes
}

/// `offpath topology` connects when given several URLs (comma-separated or the flag
/// repeated) of which the first is dead; a malformed URL is a usage error.
#[tokio::test]
async fn topology_takes_several_nats_urls() {
    let server = testing::nats();
    let dead = "nats://127.0.0.1:1";
    let comma = format!("{dead},{}", server.url());
    for args in [
        vec!["topology", "--nats-url", &comma],
        vec!["topology", "--nats-url", dead, "--nats-url", &server.url()],
    ] {
        let out = Command::new(BIN).args(&args).output().expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(stream_max_bytes(&server.url()).await.len(), 6);
    let out = Command::new(BIN)
        .args(["topology", "--nats-url", "nats://127.0.0.1:notaport"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("notaport"), "{stderr}");
}

/// `--stream-max-bytes` reaches every stream through `offpath topology` (`REVIEW` and
/// `AUDIT` stayed at 1 GiB before issue 28); a service started
/// with the default (1 GiB) reports the difference and leaves the streams as they are.
#[tokio::test]
async fn stream_max_bytes_is_set_by_topology_only() {
    let server = testing::nats();
    let url = server.url();
    let topology = |bytes: &str| {
        let out = Command::new(BIN)
            .args(["topology", "--nats-url", &url, "--stream-max-bytes", bytes])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    topology("104857600");
    assert_eq!(stream_max_bytes(&url).await, [104_857_600; 6]);
    topology("209715200");
    assert_eq!(stream_max_bytes(&url).await, [209_715_200; 6]);

    let mut transport = Command::new(BIN)
        .args([
            "transport",
            "--insecure-dev-identity",
            "--listen-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--nats-url",
            &url,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn offpath transport");
    let stderr = transport.stderr.take().expect("stderr");
    let mut log = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("JetStream topology in place") {
            break;
        }
    }
    let _ = transport.kill();
    let _ = transport.wait();
    let drift = log
        .lines()
        .filter(|l| l.contains("max_bytes = 209715200") && l.contains("WARN"))
        .count();
    // MODERATION, VERDICTS, MODERATION_DLQ, REVIEW, AUDIT and SENDERS (the interactive
    // lane's warning names its own, smaller size).
    assert_eq!(drift, 6, "one warning per stream; log:\n{log}");
    assert_eq!(stream_max_bytes(&url).await, [209_715_200; 6]);
}

/// A moderator with a missing model directory or an in-flight bound above the consumer's
/// max_ack_pending exits 64 with one line naming the flag, before connecting to NATS
/// (the URL given is dead: a connection attempt would fail differently).
#[test]
fn moderator_configuration_is_checked_before_connecting() {
    let dead = "--nats-url=nats://127.0.0.1:1";
    for (flag, expected) in [
        (
            "--model=/nonexistent",
            "offpath: --model /nonexistent: no model.toml there\n",
        ),
        (
            "--max-in-flight=5000",
            "offpath: --max-in-flight 5000 exceeds the consumer's max_ack_pending (1024)\n",
        ),
        (
            "--inference-threads=0",
            "offpath: --inference-threads must be at least 1\n",
        ),
    ] {
        let (code, stderr) = run_with_env(&["moderator", dead, flag], &[]);
        assert_eq!(code, Some(64), "{flag}: {stderr}");
        assert_eq!(stderr, expected, "{flag}");
    }
}

/// `offpath up` refuses its own bad flags and its children's (pass-through flags and the
/// environment they inherit) with status 64 before it starts anything: no nats-server.
#[test]
fn up_checks_everything_before_starting() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = format!("--data-dir={}", data.path().display());
    let args = [
        "up",
        "--listen-addr=127.0.0.1:0",
        "--transport-metrics-addr=127.0.0.1:0",
        "--moderator-metrics-addr=127.0.0.1:0",
        &data_dir,
    ];
    // (an argument added, a variable NAME=value set, expected in stderr)
    let cases = [
        (
            "",
            "OFFPATH_MODERATOR_ARGS=--inference-threads=1  --model=/nonexistent",
            "offpath: moderator: --model /nonexistent: no model.toml there",
        ),
        (
            "--moderator-arg=--no-such-flag",
            "",
            "offpath: moderator: unexpected argument '--no-such-flag'",
        ),
        (
            "",
            "OFFPATH_TRANSPORT_ARGS=--tenant=a.b",
            "offpath: transport: --tenant \"a.b\" is not a valid subject token",
        ),
        (
            "",
            "OFFPATH_MAX_IN_FLIGHT=5000",
            "offpath: moderator: --max-in-flight 5000 exceeds",
        ),
        (
            "--moderators=0",
            "",
            "offpath: --moderators must be at least 1",
        ),
        ("", "OFFPATH_STREAM_REPLICAS=9", "9 is not in 1..=5"),
    ];
    for (extra, variable, expected) in cases {
        let args: Vec<&str> = args
            .iter()
            .copied()
            .chain(Some(extra).filter(|e| !e.is_empty()))
            .collect();
        let env: Vec<(&str, &str)> = variable.split_once('=').into_iter().collect();
        let (code, stderr) = run_with_env(&args, &env);
        assert_eq!(code, Some(64), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
        assert!(
            !stderr.contains("nats-server"),
            "started something: {stderr}"
        );
    }
    assert!(
        !data.path().join("jetstream").exists(),
        "a nats-server was started"
    );
}

/// The `/metrics` text of the transport and of every moderator `offpath up` announced.
async fn scrape_stack(up: &serde_json::Value) -> Vec<String> {
    // Both as URLs (`http://<addr>/metrics`), the moderators' comma-separated.
    let address = |url: &str| -> String {
        url.strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("{url:?} is not http://<addr>/metrics"))
            .to_string()
    };
    let transport = address(up["transport_metrics"].as_str().expect("transport_metrics"));
    let moderators = up["moderator_metrics"].as_str().expect("moderator_metrics");
    // The reviewers' console, when `up` runs it: its /metrics is on its one address.
    let review = up["review"]
        .as_str()
        .filter(|r| !r.is_empty())
        .map(|r| r.trim_start_matches("http://").trim_end_matches('/'));
    let mut texts = Vec::new();
    let moderators = moderators.split(',').map(address);
    let review = review.map(str::to_string);
    for addr in std::iter::once(transport).chain(moderators).chain(review) {
        let addr = addr.parse().expect("an operator address");
        let (status, text) = offpath_harness::http::get(addr, "/metrics")
            .await
            .expect("scrape /metrics");
        assert_eq!(status, 200, "{addr}/metrics");
        texts.push(text);
    }
    texts
}
