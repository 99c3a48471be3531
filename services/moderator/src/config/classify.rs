//! The synchronous `offpath.classify` service: how many calls at once and how long each may take.

use clap::Args;
use offpath_ops::cli::Millis;

use super::defaults;

/// The synchronous `offpath.classify` service: how many calls at once and how long each may take.
#[derive(Debug, Clone, Args)]
pub struct ClassifyConfig {
    /// Synchronous offpath.classify calls served at once; more are refused as overloaded.
    #[arg(long, env = "OFFPATH_CLASSIFY_CONCURRENCY", default_value_t = defaults::CLASSIFY_CONCURRENCY)]
    pub classify_concurrency: usize,
    /// Deadline of a synchronous offpath.classify call.
    #[arg(long = "classify-timeout-ms", env = "OFFPATH_CLASSIFY_TIMEOUT_MS", default_value_t = Millis::new(defaults::CLASSIFY_TIMEOUT_MS))]
    pub classify_timeout: Millis,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            classify_concurrency: defaults::CLASSIFY_CONCURRENCY,
            classify_timeout: Millis::new(defaults::CLASSIFY_TIMEOUT_MS),
        }
    }
}
