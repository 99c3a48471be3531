//! What a moderator remembers of recent traffic: the spam-wave cache (identical short
//! texts reuse one inference) and the sender book (what sender rules count).

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
    /// Senders whose last hour (messages, repeats, blocks) this moderator keeps for sender
    /// rules, shared with every moderator through the `SENDERS` stream; 0: nothing is
    /// recorded or read, and sender rules never match. At most ~3.3 KiB a sender.
    #[arg(long, env = "OFFPATH_SENDER_CAPACITY", default_value_t = defaults::SENDER_CAPACITY)]
    pub sender_capacity: usize,
    /// Recent messages whose signatures this moderator keeps to find near-duplicate
    /// campaigns across a tenant's rooms (ten minutes of the fleet's traffic at most; past
    /// it the first added go first, counted); read from `SENDERS` too. About 1.5 KiB each.
    #[arg(long, env = "OFFPATH_CAMPAIGN_CAPACITY", default_value_t = defaults::CAMPAIGN_CAPACITY)]
    pub campaign_capacity: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            cache_entries: defaults::CACHE_ENTRIES,
            cache_window: Millis::new(defaults::CACHE_WINDOW_MS),
            sender_capacity: defaults::SENDER_CAPACITY,
            campaign_capacity: defaults::CAMPAIGN_CAPACITY,
        }
    }
}
