//! Helpers shared by the integration test binaries of the `offpath` package (`gateway`,
//! `auth`, `cli`, `pipeline`, `browser`, `chaos`, `transport_metrics`); the rest of the test
//! kit is the `offpath-harness` crate. A helper only one binary uses is a module of that
//! binary (`gateway/raw.rs`, `cli/kit.rs`, `browser/contrast.rs`).

// Included by several binaries, each of which uses a part (e.g. `gateway` starts no
// `offpath up`, `cli` no transport in process): what one leaves unused, another uses.
#![allow(dead_code)]

pub(crate) mod chat;
pub(crate) mod skip;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use offpath_harness::topology;

/// The `offpath` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_offpath");

/// `offpath up` as the tests run it: JSON logs, port 0 everywhere, small streams, `extra`
/// arguments, the JetStream store in `data_dir`, no NATS URL from the environment, its
/// log on a pipe, and killed when the spawning (test) thread ends.
pub(crate) fn up(data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args([
            "--log-json",
            "up",
            "--listen-addr=127.0.0.1:0",
            "--transport-metrics-addr=127.0.0.1:0",
            "--moderator-metrics-addr=127.0.0.1:0",
        ])
        .arg(format!("--stream-max-bytes={}", topology::STREAM_BYTES))
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OFFPATH_NATS_URL")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // A test that fails before it stops the launcher must not leave it running (with its
    // nats-server and services) after the test: it dies with the test's thread, and its
    // children with it.
    offpath_harness::set_die_with_parent(&mut command);
    command
}

/// Runs `offpath <args>` with `env` set; kills it when it has not exited within `timeout`.
pub(crate) fn output_within(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn offpath");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

/// Runs `offpath <args>` with `env` set, for 30 s at most: exit code and stderr.
pub(crate) fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = output_within(args, env, Duration::from_secs(30));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An `offpath up` started by [`start_up`]: killed (with its children) when dropped.
pub(crate) struct Launched {
    /// The fields of its "offpath is up" log event (`url`, `chat`, `websocket`, …).
    pub(crate) fields: serde_json::Value,
    child: std::process::Child,
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `offpath up` as [`up`] does and waits (up to 120 s) until it reports it is up;
/// its log is read to the end on a thread of its own.
pub(crate) fn start_up(data_dir: &Path, extra: &[&str]) -> Launched {
    use std::io::{BufRead, BufReader};
    let mut child = up(data_dir, extra).spawn().expect("spawn offpath up");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && line.contains("offpath is up")
            {
                let _ = tx.send(event["fields"].clone());
            }
        }
    });
    let fields = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("offpath up reported it is up");
    Launched { fields, child }
}

/// Asserts that `response` (of `what`) carries the security headers every page-serving
/// port sends: a CSP that allows no inline code and no framing, `X-Frame-Options: DENY`,
/// `nosniff`, `no-referrer`.
pub(crate) fn assert_security_headers(what: &str, response: &offpath_harness::http::Response) {
    let csp = response
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy: {response:?}"));
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(response.header(name), Some(value), "{what}: {name}");
    }
}

/// Asserts that `page` (HTML) has no inline script or style a `'self'`-only CSP would block:
/// scripts and styles are files, no `on…=` handler or `style=` attribute.
pub(crate) fn assert_no_inline_code(what: &str, page: &str) {
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("<style"), "{what}: an inline <style>");
    for (at, _) in lower.match_indices("<script") {
        let tag = &lower[at..at + lower[at..].find('>').expect("a closed tag")];
        assert!(tag.contains(" src="), "{what}: an inline script: {tag}");
    }
    let inline = |word: &str| {
        let name = word.split_once('=').map_or("", |(name, _)| name);
        name == "style" || (name.starts_with("on") && name.chars().all(|c| c.is_ascii_alphabetic()))
    };
    let words = lower.split(|c: char| c.is_whitespace() || c == '<');
    if let Some(word) = words.into_iter().find(|word| inline(word)) {
        panic!("{what}: an inline style or handler attribute: {word}");
    }
}
