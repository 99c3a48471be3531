//! The operator kit under `deploy/` (alert rules, Grafana dashboard) read as data: the
//! PromQL expressions it holds and the offpath metric names they use.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// `deploy/<path>` in this checkout.
pub(crate) fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// Every `expr` of the Grafana dashboard's panels.
pub(crate) fn dashboard_exprs() -> Vec<String> {
    let path = deploy("grafana/dashboards/offpath.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("expr").to_string())
        .collect();
    assert!(!exprs.is_empty(), "the dashboard has no expressions");
    exprs
}

/// The offpath metric names (`offpath_…`) in `text`, histogram suffixes removed.
pub(crate) fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("offpath_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}

/// The names the operator kit reads: the alert rules' and the dashboard's.
pub(crate) fn names_used() -> BTreeSet<String> {
    let alerts = std::fs::read_to_string(deploy("prometheus/alerts.yml")).expect("alerts");
    let mut names = metric_names(&alerts);
    names.extend(dashboard_exprs().iter().flat_map(|e| metric_names(e)));
    names
}

/// Panics naming every metric the kit reads that no scraped `/metrics` text exports.
pub(crate) fn assert_kit_reads_exported_names(scraped: &[String]) {
    let exported: BTreeSet<String> = scraped
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| !line.starts_with('#'))
        .flat_map(metric_names)
        .collect();
    let used = names_used();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the alert rules or the dashboard read metrics no service exports: {unknown:?}"
    );
}
