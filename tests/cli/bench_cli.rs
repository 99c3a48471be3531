//! `offpath bench`: the launcher runs the load scenarios' own binary, `offpath-bench`,
//! from beside itself; and the throughput scenario's report.

use crate::bench_binary;
use crate::common;

use std::process::Command;

use common::BIN;

/// `offpath bench throughput` measures inference with distinct texts, reports paced latency
/// and the spam wave on a line of its own (a short run: the figures themselves come from the
/// release build, see the README).
#[test]
fn bench_throughput_reports_distinct_paced_and_spam_lines() {
    bench_binary::build();
    let out = Command::new(BIN)
        .args([
            "bench",
            "throughput",
            "--messages=300",
            "--raw-messages=64",
            "--paced-s=0.5",
            "--inference-threads=1",
        ])
        .env("OFFPATH_LOG", "warn")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "every request is distinct",
        "raw in-process, batch",
        "end to end, distinct texts:",
        "ratios: end-to-end / raw batched",
        "paced at 50% of capacity",
        "paced at 90% of capacity",
        "spam wave",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}

/// `offpath bench lanes` measures capacity, then a hold room alone, beside a bulk flood
/// without lanes, and with the interactive lane, each line with its p99 against idle's (a
/// short run in debug: the figures come from the release build, see the README).
#[test]
fn bench_lanes_reports_idle_no_lanes_and_lanes() {
    bench_binary::build();
    let out = Command::new(BIN)
        .args([
            "bench",
            "lanes",
            "--messages=200",
            "--duration-s=2",
            "--hold-rate=5",
            "--inference-threads=1",
        ])
        .env("OFFPATH_LOG", "warn")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "capacity",
        "idle: hold room",
        "no lanes: hold room",
        "lanes: hold room",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}

/// A folder holding a hard link to the `offpath` under test (same file system: inside the
/// target folder), where a test decides what `offpath-bench` is.
fn offpath_alone() -> (tempfile::TempDir, std::path::PathBuf) {
    let bin = std::path::Path::new(BIN);
    let dir = tempfile::tempdir_in(bin.parent().expect("folder")).expect("tempdir");
    let linked = dir.path().join("offpath");
    std::fs::hard_link(bin, &linked).expect("hard link");
    (dir, linked)
}

/// Without `offpath-bench` beside it, `offpath bench` fails with one line that names the
/// build command, and exits 1 (the command line was right; the build is incomplete).
#[test]
fn bench_without_its_binary_names_the_build_command() {
    let (_dir, offpath) = offpath_alone();
    let out = Command::new(&offpath)
        .args(["bench", "throughput"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("offpath-bench not found"), "{stderr}");
    assert!(stderr.contains("`cargo build"), "{stderr}");
}

/// `offpath bench` runs the `offpath-bench` beside it with every argument after `bench`
/// (`--help` included), the launcher's log filter in `OFFPATH_LOG`, and its exit status.
#[test]
fn bench_runs_the_binary_beside_it() {
    use std::os::unix::fs::PermissionsExt;

    let (dir, offpath) = offpath_alone();
    let fake = dir.path().join("offpath-bench");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf '%s|' \"$0\" \"$@\" \"$OFFPATH_LOG\"\nexit 3\n",
    )
    .expect("write");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new(&offpath)
        .args([
            "--log-filter=debug",
            "bench",
            "isolation",
            "--rate=5",
            "--help",
        ])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.ends_with("|isolation|--rate=5|--help|debug|"),
        "{stdout}"
    );
}

/// `offpath bench cost` runs a hold room alone, beside an uncharged and a charged sender of
/// expensive texts, each line with its deadline share and p99 against idle's (a short run in
/// debug: the figures come from the release build, see docs/security.md).
#[test]
fn bench_cost_reports_idle_uncharged_and_charged() {
    bench_binary::build();
    let out = Command::new(BIN)
        .args([
            "bench",
            "cost",
            "--duration-s=2",
            "--hold-rate=4",
            "--send-rate=2",
            "--inference-threads=1",
        ])
        .env("OFFPATH_LOG", "warn")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "charged (64 of the send rate each",
        "idle: hold room",
        "uncharged: hold room",
        "charged: hold room",
        "within the 3000 ms hold deadline",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}
