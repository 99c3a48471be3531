//! What an operator reads when something is wrong: a NATS server too old, an error chain,
//! a JetStream refusal, logs into a pipe. One line each, each cause once, no colour codes.

use crate::common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use offpath_harness::testing;

use common::{output_within, run_with_env};

/// A fake NATS server that introduces itself as `version` and answers PING; port.
fn fake_nats(version: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                let info = format!(
                    "INFO {{\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"{version}\",\
                     \"go\":\"go1.19\",\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\
                     \"max_payload\":1048576,\"proto\":1,\"jetstream\":true}}\r\n"
                );
                use std::io::Write;
                let _ = writer.write_all(info.as_bytes());
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.starts_with("PING") {
                        let _ = writer.write_all(b"PONG\r\n");
                    }
                }
            });
        }
    });
    port
}

/// A nats-server older than 2.9 is refused with a one-line error by `offpath topology` and
/// `offpath transport`.
#[test]
fn an_old_nats_server_is_refused() {
    let url = format!("nats://127.0.0.1:{}", fake_nats("2.8.4"));
    for args in [
        vec!["topology", "--nats-url", &url],
        vec![
            "transport",
            "--insecure-dev-identity",
            "--listen-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--nats-url",
            &url,
        ],
    ] {
        let out = output_within(&args, &[], Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("nats-server 2.8.4 is older than the oldest supported version"),
            "{args:?}: {stderr}"
        );
    }
}

/// A connection error names each cause once (async-nats' errors print their source in
/// their own message too; anyhow's `{:#}` used to print it again).
#[test]
fn an_error_chain_prints_each_cause_once() {
    let (code, stderr) = run_with_env(&["topology", "--nats-url=nats://127.0.0.1:1"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("offpath: connecting to NATS at nats://127.0.0.1:1: "));
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}

/// A JetStream error while putting the topology in place (3 replicas on a single server)
/// is printed with each cause once.
#[test]
fn a_topology_error_prints_each_cause_once() {
    let server = testing::nats();
    let url = server.url();
    let (code, stderr) = run_with_env(&["topology", "--nats-url", &url, "--replicas=3"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("offpath: could not create or update JetStream stream MODERATION: "),
        "{stderr}"
    );
    let causes: Vec<&str> = stderr.trim_end().split(": ").collect();
    for (i, cause) in causes.iter().enumerate() {
        assert!(
            !causes[i + 1..].contains(cause),
            "{cause:?} printed twice: {stderr}"
        );
    }
}

/// Logs written to a pipe carry no ANSI colour codes.
#[test]
fn no_colour_codes_into_a_pipe() {
    // Fails fast (dead NATS) after logging at least one line through tracing.
    let (code, stderr) = run_with_env(&["up", "--nats-url=nats://127.0.0.1:1"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains("\x1b["), "{stderr:?}");
}
