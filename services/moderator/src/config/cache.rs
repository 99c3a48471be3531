//! The spam-wave cache: identical short texts reuse one inference.

use clap::Args;
use offpath_ops::cli::Millis;

use super::defaults;

/// The spam-wave cache: identical short texts reuse one inference.
#[derive(Debug, Clone, Args)]
pub struct CacheConfig {
    /// Texts remembered for spam waves (identical short texts reuse one inference); 0 off.
    #[arg(long, env = "OFFPATH_CACHE_ENTRIES", default_value_t = defaults::CACHE_ENTRIES)]
    pub cache_entries: usize,
    /// How long a remembered assessment is reused.
    #[arg(long = "cache-window-ms", env = "OFFPATH_CACHE_WINDOW_MS", default_value_t = Millis::new(defaults::CACHE_WINDOW_MS))]
    pub cache_window: Millis,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            cache_entries: defaults::CACHE_ENTRIES,
            cache_window: Millis::new(defaults::CACHE_WINDOW_MS),
        }
    }
}
