//! A 5-second miniature of the isolation proof (`offpath bench isolation`): asserts only the
//! qualitative result, never a timing threshold of this machine. Runs through the launcher
//! as a user does, so it also proves that `offpath bench` reaches `offpath-bench`.

mod bench_binary;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_offpath");

/// With the moderators frozen for a third of the run, the decoupled gateway delivers every
/// message within the limit and every message gets its verdict after the thaw; the inline
/// gateway holds messages until its timeout (or fails to deliver them).
#[test]
fn hung_moderators_stall_inline_chat_and_not_decoupled_chat() {
    bench_binary::build();
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(BIN)
        .args([
            "bench",
            "isolation",
            "--connections=20",
            "--rooms=4",
            "--rate=50",
            "--duration-s=5",
            "--warmup-s=1",
            "--inline-timeout-ms=1000",
            "--settle-s=30",
            "--scenarios=none,decoupled-hung,inline-hung",
        ])
        .arg("--out")
        .arg(out.path())
        .env("OFFPATH_LOG", "warn")
        .output()
        .expect("run offpath bench isolation");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("isolation.json")).expect("isolation.json"),
    )
    .expect("JSON report");
    let scenario = |name: &str| {
        report["scenarios"]
            .as_array()
            .expect("scenarios")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in the report"))
            .clone()
    };
    let (none, decoupled, inline) = (
        scenario("none"),
        scenario("decoupled-hung"),
        scenario("inline-hung"),
    );
    for s in [&none, &decoupled, &inline] {
        assert!(s["sent"].as_u64().expect("sent") >= 200, "{s}");
    }
    assert_eq!(none["undelivered_5s"], 0, "{none}");
    assert_eq!(
        decoupled["undelivered_5s"], 0,
        "decoupled-hung delivers everything: {decoupled}"
    );
    assert!(
        decoupled["verdict_coverage_pct"]
            .as_f64()
            .expect("coverage")
            >= 99.9,
        "work resumes after SIGCONT: {decoupled}"
    );
    let stalled = inline["max_ms"].as_f64().expect("max") >= 1000.0
        || inline["undelivered_5s"].as_u64().expect("undelivered") > 0;
    assert!(stalled, "inline-hung stalls chat: {inline}");
    for file in ["isolation.md", "isolation.svg"] {
        assert!(out.path().join(file).exists(), "{file} written");
    }
}
