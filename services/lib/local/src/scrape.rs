//! A Prometheus text rendering (`/metrics`) read from outside: the sum of a metric's
//! samples by name and labels, as the load scenarios report it. The tests' readers (series,
//! values, missing series, `promtool`) are in `offpath-harness`, built on these.

/// The sum of every sample of `name` whose labels contain `labels` (e.g. `action="block"`;
/// `""` sums every sample of `name`).
pub fn metric(metrics: &str, name: &str, labels: &str) -> f64 {
    samples(metrics)
        .filter(|line| line.split(['{', ' ']).next() == Some(name) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sample lines (not `# HELP` / `# TYPE`).
pub fn samples(metrics: &str) -> impl Iterator<Item = &str> {
    metrics.lines().filter(|line| !line.starts_with('#'))
}
