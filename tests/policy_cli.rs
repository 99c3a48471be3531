//! `offpath policy check`, as an operator runs it before giving moderators a policy file.

mod common;

use std::process::Command;

use common::BIN;

/// The example policy file under `deploy/` is valid against the shipped models: each
/// policy is printed with its version.
#[test]
fn the_example_policy_file_checks() {
    let out = Command::new(BIN)
        .args(["policy", "check", "deploy/policies/policies.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run offpath");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for policy in ["standard", "strict", "review-only"] {
        assert!(
            stdout.contains(&format!("policy {policy} version ")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("ok (3 policies"), "{stdout}");
}

/// A bad file exits 64 with every problem on a line of its own, naming where it is.
#[test]
fn a_bad_policy_file_exits_64_listing_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "default = \"missing\"\n[policies.a]\nmodels = [\"gpt-9\"]\n\
         [policies.b]\nlabels.insult = { block = 2.0 }\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(&file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run offpath");
    assert_eq!(out.status.code(), Some(64));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for problem in [
        "default: no policy named \"missing\"",
        "policies.a.models: unknown model \"gpt-9\"",
        "policies.b.labels.insult.block: 2 is outside 0..=1",
    ] {
        assert!(stdout.contains(problem), "{problem:?} not in {stdout}");
    }
    assert!(stderr.contains("3 problems"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
