//! The Prometheus recorder of a service, installed once per process: histogram buckets set
//! in one place, every metric described, every series registered at 0 before the first
//! event, and the `process_*` figures read at every scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// 1, labelled with this build's `version` and git `commit` (each service's own).
pub const BUILD_INFO: &str = "offpath_build_info";

/// What a service's recorder is made of.
pub struct Spec {
    /// Buckets of every histogram whose name ends in `_seconds`.
    pub seconds: &'static [f64],
    /// Buckets of other histograms, by full name.
    pub buckets: &'static [(&'static str, &'static [f64])],
    /// Describes every metric of the service (`promtool check metrics` wants each one).
    pub describe: fn(),
    /// Puts every series of the service on `/metrics` at start (with a [`Series`]).
    pub register: fn(),
    /// The service's `CARGO_PKG_VERSION`, for [`BUILD_INFO`].
    pub version: &'static str,
    /// The service's `OFFPATH_COMMIT` (set by `services/build_info.rs`), for [`BUILD_INFO`].
    pub commit: &'static str,
}

/// Every series of a service, put on `/metrics` at start by [`Series::register`]: the
/// exporter renders a series only once it is touched, and `increase()` over a series that
/// appears with its first event misses that event.
pub struct Series<'a> {
    /// Counters without labels, at 0.
    pub counters: &'a [&'static str],
    /// Counters at 0 for every value a label can take: `(name, label, values)`.
    pub labelled: &'a [(&'static str, &'static str, &'a [&'static str])],
    /// Gauges, incremented by 0 (not set: a gauge already moved keeps its value).
    pub gauges: &'a [&'static str],
    /// Histograms: registering a handle is enough for this exporter, it renders the
    /// buckets, `_sum` and `_count` at 0 with no sample recorded.
    pub histograms: &'a [&'static str],
}

impl Series<'_> {
    /// Puts every series on the installed recorder now, so that the first event is an
    /// increase rather than a new series.
    pub fn register(&self) {
        for &name in self.counters {
            metrics::counter!(name).increment(0);
        }
        for &(name, label, values) in self.labelled {
            for &value in values {
                metrics::counter!(name, label => value).increment(0);
            }
        }
        for &name in self.gauges {
            metrics::gauge!(name).increment(0.0);
        }
        for &name in self.histograms {
            let _ = metrics::histogram!(name);
        }
    }
}

/// A service's recorder: declared as a `static`, installed by the first [`handle`] call.
///
/// [`handle`]: Self::handle
pub struct Prometheus {
    spec: Spec,
    handle: OnceLock<PrometheusHandle>,
}

impl Prometheus {
    /// The recorder `spec` describes, not installed yet.
    pub const fn new(spec: Spec) -> Self {
        Self {
            spec,
            handle: OnceLock::new(),
        }
    }

    /// The recorder's handle, installing it as the global recorder on the first call.
    pub fn handle(&self) -> &PrometheusHandle {
        self.handle.get_or_init(|| self.install())
    }

    fn install(&self) -> PrometheusHandle {
        let spec = &self.spec;
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), spec.seconds);
        for &(name, buckets) in spec.buckets {
            builder =
                builder.and_then(|b| b.set_buckets_for_metric(Matcher::Full(name.into()), buckets));
        }
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (an embedding program's): then
        // /metrics shows this recorder's (empty) view and the program's own exporter rules.
        let _ = metrics::set_global_recorder(recorder);
        (spec.describe)();
        metrics::describe_gauge!(
            BUILD_INFO,
            "1, labelled with this build's version and commit"
        );
        process_metrics().describe();
        (spec.register)();
        metrics::gauge!(BUILD_INFO, "version" => spec.version, "commit" => spec.commit).set(1.0);
        handle
    }

    /// `/metrics`: the process figures of now, then everything.
    pub(crate) fn render(&self) -> String {
        // Installed first: figures collected before the recorder is would be lost.
        let handle = self.handle();
        process_metrics().collect();
        handle.render()
    }
}

/// The `process_*` collector, read at every scrape.
fn process_metrics() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}
