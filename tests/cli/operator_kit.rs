//! The operator kit under `deploy/` is checked by the tools Prometheus ships: the scrape
//! config and alert rules with `promtool check`, every alert with its unit tests
//! (`promtool test rules`), every dashboard expression parsed as PromQL, and the systemd
//! units (their command lines always; `systemd-analyze verify` where it is installed, and a
//! failure in CI and under `scripts/test` where it is not: `tests/common/skip.rs`). That the kit
//! reads only metrics the services export is checked against a running stack in
//! `tests/cli/cli.rs` (`up_runs_the_pipeline_and_stops_on_sigterm`).

use crate::common;

use std::process::Command;

use crate::kit;

/// Runs `promtool <args>` and panics with its output when it fails.
fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/bootstrap --promtool installs it)");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path(relative: &str) -> String {
    kit::deploy(relative).display().to_string()
}

/// The scrape config (with its rule file) is valid Prometheus configuration.
#[test]
fn prometheus_config_is_valid() {
    promtool(&["check", "config", &path("prometheus/prometheus.yml")]);
}

/// The alert rules parse, and each alert fires where it should and stays quiet where it
/// should not (the cases in `alerts_test.yml`).
#[test]
fn alert_rules_pass_their_unit_tests() {
    promtool(&["check", "rules", &path("prometheus/alerts.yml")]);
    promtool(&["test", "rules", &path("prometheus/alerts_test.yml")]);
}

/// Every alert in the rules has at least one unit-test case.
#[test]
fn every_alert_is_tested() {
    let rules = std::fs::read_to_string(kit::deploy("prometheus/alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(kit::deploy("prometheus/alerts_test.yml")).expect("tests");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(
        alerts.len(),
        14,
        "the seven alerts of the operator kit, a refused policy change, a forged policy value, \
         the review queue's three, the sender state's and the brake's"
    );
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no unit test"
        );
    }
}

/// Every expression of the Grafana dashboard parses as PromQL: promtool checks them as
/// recording rules (a rule file may be JSON, which YAML includes).
#[test]
fn dashboard_expressions_parse_as_promql() {
    let rules: Vec<serde_json::Value> = kit::dashboard_exprs()
        .into_iter()
        .enumerate()
        .map(|(n, expr)| serde_json::json!({ "record": format!("dashboard:expr_{n}"), "expr": expr }))
        .collect();
    let file = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_path = dir.path().join("dashboard.rules.json");
    std::fs::write(&rules_path, file.to_string()).expect("write rules");
    promtool(&["check", "rules", &rules_path.display().to_string()]);
}

/// The kit reads the metrics it promises to: traffic, lag, backlog, batch size,
/// inference time, sheds, dead letters and the moderators' state.
#[test]
fn the_kit_covers_what_operators_watch() {
    let used = kit::names_used();
    for name in [
        "offpath_transport_messages_total",
        "offpath_transport_verdict_lag_seconds",
        "offpath_moderator_consumer_pending",
        "offpath_moderator_batch_size",
        "offpath_moderator_inference_seconds",
        "offpath_transport_outbox_shed_total",
        "offpath_moderator_dead_letters_total",
        "offpath_moderator_last_progress_timestamp_seconds",
        "offpath_transport_verdict_consumer_bound",
        "offpath_review_oldest_item_age_seconds",
        "offpath_moderator_review_items_lost_total",
        "offpath_review_queue_depth",
        "offpath_review_decisions_total",
        "offpath_moderator_near_duplicates_total",
        "offpath_moderator_brake_held_total",
        "offpath_moderator_sender_last_read_timestamp_seconds",
    ] {
        assert!(used.contains(name), "the kit does not read {name}");
    }
}

/// Every review, sender-state and brake metric an alert reads (the console's
/// `offpath_review_*`, the moderators' `…_review_items_…`, `…_sender_…`, `…_brake_…`) is
/// also on the dashboard, so whoever is paged can see its history: the review queue's depth
/// and age, decisions and lost intake, the sender state's reads, the brake's holds.
#[test]
fn every_review_metric_an_alert_reads_is_on_the_dashboard() {
    let alerts = std::fs::read_to_string(kit::deploy("prometheus/alerts.yml")).expect("alerts");
    let on_dashboard: std::collections::BTreeSet<String> = kit::dashboard_exprs()
        .iter()
        .flat_map(|expr| kit::metric_names(expr))
        .collect();
    let alerted: Vec<String> = kit::metric_names(&alerts)
        .into_iter()
        .filter(|name| {
            ["review", "sender", "brake"]
                .iter()
                .any(|n| name.contains(n))
        })
        .collect();
    assert!(
        alerted.len() >= 5,
        "the review alerts read the queue's age, dropped reports and lost items: {alerted:?}"
    );
    let missing: Vec<&String> = alerted
        .iter()
        .filter(|name| !on_dashboard.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "alerts read review metrics the dashboard does not show: {missing:?}"
    );
}

/// The systemd units of `deploy/systemd/`: the transport's, the moderator's and the
/// reviewers' console's.
const UNITS: [&str; 3] = [
    "offpath-moderator.service",
    "offpath-transport.service",
    "offpath-review.service",
];

/// The text of a unit and the arguments of its `ExecStart=/usr/local/bin/offpath …`.
fn unit(name: &str) -> (String, String) {
    let text = std::fs::read_to_string(kit::deploy(&format!("systemd/{name}"))).expect("unit");
    let exec = text
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart=/usr/local/bin/offpath "))
        .unwrap_or_else(|| panic!("{name}: no ExecStart=/usr/local/bin/offpath"))
        .to_string();
    (text, exec)
}

/// Each unit's command line is the binary's own (`--help` after it parses the flags before
/// it stops, nothing started), and each credential it reads is one it loads. Needs no
/// systemd: it runs everywhere.
#[test]
fn systemd_unit_command_lines_parse() {
    for name in UNITS {
        let (text, exec) = unit(name);
        let args: Vec<String> = exec
            .replace("${CREDENTIALS_DIRECTORY}", "/run/credentials")
            .split_whitespace()
            .map(String::from)
            .chain(["--help".to_string()])
            .collect();
        let output = Command::new(common::BIN)
            .args(&args)
            .output()
            .expect("offpath");
        assert!(
            output.status.success(),
            "{name}: `offpath {exec}` does not parse: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for used in exec.split("${CREDENTIALS_DIRECTORY}/").skip(1) {
            let credential = used.split_whitespace().next().expect("a credential name");
            assert!(
                text.contains(&format!("LoadCredential={credential}:")),
                "{name}: reads the credential {credential}, which it does not load"
            );
        }
    }
    let (_, review) = unit("offpath-review.service");
    assert!(
        review.starts_with("review "),
        "the console's unit runs `offpath review`"
    );
}

/// The systemd units are valid for `systemd-analyze verify` (with the binary under test in
/// place of `/usr/local/bin/offpath`). Debian's systemd package has it (`scripts/bootstrap
/// --systemd-analyze`); without it the test fails in CI and under `scripts/test`.
#[test]
fn systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip::skip_or_fail(
            "systemd-analyze is not installed (Debian's systemd package; `scripts/bootstrap \
             --systemd-analyze` installs it)",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut units = Vec::new();
    for name in UNITS {
        let (text, _) = unit(name);
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("/usr/local/bin/offpath", common::BIN)).expect("write");
        units.push(path.display().to_string());
    }
    let mut verify = vec!["verify", "--man=no"];
    verify.extend(units.iter().map(String::as_str));
    let output = Command::new("systemd-analyze")
        .args(&verify)
        .output()
        .expect("systemd-analyze");
    assert!(
        output.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The skip rule of the suite: a skip fails in CI and under `scripts/test` unless
/// `OFFPATH_ALLOW_SKIP=1`, and is allowed (and says how it would fail) elsewhere.
#[test]
fn a_skip_fails_in_ci_and_under_scripts_test() {
    use common::skip::{Skip, decide};
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    };
    let refused = |skip: Skip| matches!(skip, Skip::Refused(_));
    assert!(refused(decide("x", env(&[("CI", "true")]))));
    assert!(refused(decide("x", env(&[("OFFPATH_SCRIPTS_TEST", "1")]))));
    assert!(refused(decide(
        "x",
        env(&[("CI", "1"), ("OFFPATH_ALLOW_SKIP", "0")])
    )));
    let Skip::Allowed(line) = decide("x", env(&[("CI", "1"), ("OFFPATH_ALLOW_SKIP", "1")])) else {
        panic!("OFFPATH_ALLOW_SKIP=1 lets it skip");
    };
    assert!(
        line.starts_with("SKIPPED: x") && line.contains("OFFPATH_ALLOW_SKIP=1"),
        "{line}"
    );
    let Skip::Allowed(line) = decide("x", env(&[("CI", "")])) else {
        panic!("an empty CI is not CI");
    };
    assert!(line.contains("fails in CI"), "{line}");
    let Skip::Refused(message) = decide("x", env(&[("CI", "true")])) else {
        panic!("CI without OFFPATH_ALLOW_SKIP refuses a skip");
    };
    assert!(message.contains("OFFPATH_ALLOW_SKIP=1"), "{message}");
}
