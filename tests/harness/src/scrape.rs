//! A Prometheus text rendering (`/metrics`) read by tests: sums by name and labels
//! ([`metric`], from `offpath-local`, which the load scenarios use too), series, single
//! values, the series that are missing, and `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};

pub use offpath_local::scrape::metric;
use offpath_local::scrape::samples;

/// Asserts each `(name, labels, sum)` of `expected` against [`metric`]`(metrics, name, labels)`.
///
/// # Panics
/// On the first sum that differs, naming its series.
pub fn assert_sums(metrics: &str, expected: &[(&str, &str, f64)]) {
    for (name, labels, sum) in expected {
        assert_eq!(metric(metrics, name, labels), *sum, "{name} {{{labels}}}");
    }
}

/// The series (a sample line without its value) that start with `prefix`.
pub fn series<'a>(metrics: &'a str, prefix: &str) -> Vec<&'a str> {
    samples(metrics)
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series))
        .collect()
}

/// The value of the first sample line that starts with `series`.
///
/// # Panics
/// When there is none: the test's series is not exported.
pub fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

/// The `process_*` series every service exports (CPU, memory, descriptors, start, threads).
pub const PROCESS_SERIES: [&str; 5] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "process_threads",
];

/// The series of labelled counters: `name{label="value"}` for each `(name, label, values)`
/// of `table` and each of its values.
pub fn labelled<'a>(
    table: &'a [(&'a str, &'a str, &'a [&'a str])],
) -> impl Iterator<Item = String> + 'a {
    table.iter().flat_map(|(name, label, values)| {
        values
            .iter()
            .map(move |value| format!("{name}{{{label}=\"{value}\"}}"))
    })
}

/// The series a service exports from the start: `unlabelled`, [`PROCESS_SERIES`], and the
/// [`labelled`] series of `table`.
pub fn expected_series(unlabelled: &[&str], table: &[(&str, &str, &[&str])]) -> Vec<String> {
    let fixed = unlabelled
        .iter()
        .chain(&PROCESS_SERIES)
        .map(|s| s.to_string());
    fixed.chain(labelled(table)).collect()
}

/// The `expected` series that have no sample line (`<series> <value>`) in `metrics`.
pub fn missing(metrics: &str, expected: impl IntoIterator<Item = String>) -> Vec<String> {
    expected
        .into_iter()
        .filter(|s| {
            !metrics
                .lines()
                .any(|line| line.starts_with(&format!("{s} ")))
        })
        .collect()
}

/// Runs `promtool check metrics` on a `/metrics` rendering.
///
/// # Panics
/// With promtool's complaints, or with how to install it when it is missing (Debian's
/// `prometheus` package).
pub fn promtool_check(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run promtool ({err}): install Debian's `prometheus` package \
                 (apt-get install -y prometheus, or scripts/bootstrap --promtool)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused /metrics:\n{}{}\n--- /metrics ---\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP a_total A.\n# TYPE a_total counter\n\
        a_total{action=\"allow\"} 2\na_total{action=\"block\"} 3\nab_total 7\n";

    /// Sums follow the name exactly and the labels by substring; series and values are
    /// read by prefix; the missing series are those with no sample line.
    #[test]
    fn reads_a_rendering() {
        assert_eq!(metric(TEXT, "a_total", ""), 5.0);
        assert_eq!(metric(TEXT, "a_total", "block"), 3.0);
        assert_eq!(metric(TEXT, "b_total", ""), 0.0);
        assert_eq!(
            series(TEXT, "a_total"),
            ["a_total{action=\"allow\"}", "a_total{action=\"block\"}"]
        );
        assert_eq!(value(TEXT, "ab_total"), 7.0);
        let expected = labelled(&[("a_total", "action", &["block", "flag"])]);
        assert_eq!(missing(TEXT, expected), ["a_total{action=\"flag\"}"]);
    }
}
