//! The load generator's command line, run as the built binary. Being an integration test of
//! this package, it also makes cargo build `offpath-bench` in the same build as the rest of
//! the suite, so the scenario tests at the root find it fresh beside `offpath`
//! (`tests/bench_binary`).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_offpath-bench");

/// `--help` names the scenarios.
#[test]
fn help_lists_the_scenarios() {
    let out = Command::new(BIN).arg("--help").output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for scenario in ["throughput", "isolation", "scale", "lanes"] {
        assert!(stdout.contains(scenario), "no {scenario:?} in:\n{stdout}");
    }
}

/// A mistake on the command line exits 64 (EX_USAGE) with one clear line, before anything
/// starts.
#[test]
fn a_bad_flag_exits_64() {
    let out = Command::new(BIN)
        .args(["scale", "--no-such-flag"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}
