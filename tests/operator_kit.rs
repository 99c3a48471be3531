//! The operator kit under `deploy/` is checked by the tools Prometheus ships: the scrape
//! config and alert rules with `promtool check`, every alert with its unit tests
//! (`promtool test rules`), and every dashboard expression parsed as PromQL. That the kit
//! reads only metrics the services export is checked against a running stack in
//! `tests/cli.rs` (`up_runs_the_pipeline_and_stops_on_sigterm`).

mod common;

use std::process::Command;

use common::kit;

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
        12,
        "the seven alerts of the operator kit, a refused policy change, a forged policy value, \
         and the review queue's three"
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
    ] {
        assert!(used.contains(name), "the kit does not read {name}");
    }
}

/// The systemd units are valid for `systemd-analyze verify` (with the binary under test in
/// place of `/usr/local/bin/offpath`), and their flags are the binary's own: each unit's
/// command line parses (`--help` after it stops before anything starts).
#[test]
fn systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian's systemd package)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut units = Vec::new();
    for name in ["offpath-moderator.service", "offpath-transport.service"] {
        let text = std::fs::read_to_string(kit::deploy(&format!("systemd/{name}"))).expect("unit");
        assert!(
            text.contains("ExecStart=/usr/local/bin/offpath "),
            "{name}: ExecStart"
        );
        let unit = dir.path().join(name);
        std::fs::write(&unit, text.replace("/usr/local/bin/offpath", common::BIN)).expect("write");
        units.push(unit.display().to_string());
        let exec = text
            .lines()
            .find_map(|line| line.strip_prefix("ExecStart=/usr/local/bin/offpath "))
            .expect("ExecStart");
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
