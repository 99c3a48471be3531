//! `offpath policy check`, as an operator runs it before giving moderators a policy file.

use crate::common;

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
         [policies.b]\nlabels.insult = { block = 2.0 }\n\
         [policies.c.rules.huge]\nregex = ['\\w{1000}\\w{1000}\\w{1000}']\naction = \"flag\"\n",
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
        // Issue 30: a regex past the compiled-size bound is refused before any moderator
        // reads the file.
        "policies.c.rules.huge.regex: ",
    ] {
        assert!(stdout.contains(problem), "{problem:?} not in {stdout}");
    }
    assert!(stderr.contains("4 problems"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `offpath policy keygen` writes a seed (0600) and prints its public key; `offpath policy
/// push` checks the file, creates the policy bucket when missing and puts the file in it,
/// signed by that key; `clear` puts a signed empty value; a bad file, or a missing or
/// foreign key, is refused before anything is written.
#[tokio::test]
async fn push_puts_a_checked_signed_file_in_the_bucket() {
    use offpath_protocol::policy_signature::Signers;
    use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
    use std::os::unix::fs::PermissionsExt;
    let server = offpath_harness::testing::nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = dir.path().join("policy.nk");
    let out = Command::new(BIN)
        .args(["policy", "keygen"])
        .arg(&seed)
        .output()
        .expect("run offpath");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let signers = Signers::parse(&[&public]).expect("an operator public key is printed");
    let mode = std::fs::metadata(&seed).expect("seed").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = Command::new(BIN)
        .args(["policy", "keygen"])
        .arg(&seed)
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(64),
        "an existing key file is never replaced"
    );

    let run = |args: &[&str], key: &std::path::Path| {
        Command::new(BIN)
            .arg("policy")
            .args(args)
            .arg("--signing-key")
            .arg(key)
            .args(["--nats-url", &server.url()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run offpath")
    };
    let bad = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(bad.path(), "default = \"x\"\n").expect("write");
    let out = run(&["push", &bad.path().display().to_string()], &seed);
    assert_eq!(out.status.code(), Some(64));
    let not_a_key = dir.path().join("not-a-key");
    std::fs::write(&not_a_key, "hello\n").expect("write");
    let out = run(&["push", "deploy/policies/policies.toml"], &not_a_key);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--signing-key"));
    let js = async_nats::jetstream::new(offpath_harness::testing::connect(&server).await);
    assert!(
        js.get_key_value(POLICY_BUCKET).await.is_err(),
        "nothing was written for a bad file or key"
    );

    let out = run(&["push", "deploy/policies/policies.toml"], &seed);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = js
        .get_key_value(POLICY_BUCKET)
        .await
        .expect("the bucket was created");
    let stored = store.get(POLICY_KEY).await.expect("get").expect("a value");
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policies/policies.toml"),
    )
    .expect("read");
    let pushed = signers.verify(&stored, None).expect("signed by the key");
    assert_eq!(pushed.text, file);

    let out = run(&["clear"], &seed);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = store.get(POLICY_KEY).await.expect("get").expect("a value");
    let cleared = signers
        .verify(&stored, Some(pushed.signed_at_ms))
        .expect("signed, and not older than the push");
    assert_eq!(cleared.text, "");
}
