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

/// `offpath policy push` checks the file, creates the policy bucket when missing and puts
/// the file in it; a bad file is refused before anything is written.
#[tokio::test]
async fn push_puts_a_checked_file_in_the_bucket() {
    use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
    let server = offpath_harness::testing::nats();
    let push = |file: &str| {
        Command::new(BIN)
            .args(["policy", "push", file, "--nats-url", &server.url()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run offpath")
    };
    let bad = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(bad.path(), "default = \"x\"\n").expect("write");
    let out = push(&bad.path().display().to_string());
    assert_eq!(out.status.code(), Some(64));
    let js = async_nats::jetstream::new(offpath_harness::testing::connect(&server).await);
    assert!(
        js.get_key_value(POLICY_BUCKET).await.is_err(),
        "nothing was written for a bad file"
    );

    let out = push("deploy/policies/policies.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = js
        .get_key_value(POLICY_BUCKET)
        .await
        .expect("the bucket was created")
        .get(POLICY_KEY)
        .await
        .expect("get")
        .expect("a value");
    let file = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policies/policies.toml"),
    )
    .expect("read");
    assert_eq!(&stored[..], &file[..]);
}
