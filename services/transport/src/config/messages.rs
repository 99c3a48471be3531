//! Messages: how long a text may be, how long delivered messages are remembered for their verdicts, and what members may report.

use super::{LimitsConfig, defaults};
use clap::Args;
use offpath_ops::cli::Millis;

/// Messages: how long a text may be, how long delivered messages are remembered for their verdicts, and what members may report.
#[derive(Debug, Clone, Args)]
pub struct MessagesConfig {
    /// Longest message text accepted, in bytes.
    #[arg(long, env = "OFFPATH_MAX_TEXT_BYTES", default_value_t = defaults::MAX_TEXT_BYTES)]
    pub max_text_bytes: usize,
    /// How long a delivered message is remembered for its verdict (retraction needs it).
    #[arg(long = "track-for-ms", env = "OFFPATH_TRACK_FOR_MS", default_value_t = Millis::new(defaults::TRACK_FOR_MS))]
    pub track_for: Millis,
    /// Most messages remembered for their verdicts; the oldest are forgotten first.
    #[arg(long, env = "OFFPATH_MAX_TRACKED", default_value_t = defaults::MAX_TRACKED)]
    pub max_tracked: usize,
    /// How many of each room's latest delivered messages members can report (the gateway
    /// keeps them, at most 64 KiB of text per room, while the room has members here).
    #[arg(long, env = "OFFPATH_REPORT_WINDOW", default_value_t = defaults::REPORT_WINDOW)]
    pub report_window: usize,
    /// How many messages shown before a message go with its moderation request, as context
    /// for a reviewer should it reach the review queue (0: none; at most 10).
    #[arg(long, env = "OFFPATH_REVIEW_CONTEXT", default_value_t = defaults::REVIEW_CONTEXT,
        value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u8).range(0..=10), usize::from))]
    pub review_context: usize,
    /// Reports one member may queue per minute, all their connections to this gateway
    /// together (a token bucket; past it `rate_limited`): what one account can put in
    /// front of the reviewers.
    #[arg(long, env = "OFFPATH_REPORTS_PER_MINUTE", default_value_t = defaults::REPORTS_PER_MINUTE)]
    pub reports_per_minute: f64,
    /// Reports one member may queue at once before `--reports-per-minute` applies.
    #[arg(long, env = "OFFPATH_REPORT_BURST", default_value_t = defaults::REPORT_BURST)]
    pub report_burst: f64,
    /// Reports this gateway queues per minute from all members together (its tenant's
    /// share of the review queue, per gateway).
    #[arg(long, env = "OFFPATH_GATEWAY_REPORTS_PER_MINUTE", default_value_t = defaults::GATEWAY_REPORTS_PER_MINUTE)]
    pub gateway_reports_per_minute: f64,
    /// Reports this gateway queues at once before `--gateway-reports-per-minute` applies.
    #[arg(long, env = "OFFPATH_GATEWAY_REPORT_BURST", default_value_t = defaults::GATEWAY_REPORT_BURST)]
    pub gateway_report_burst: f64,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        Self {
            max_text_bytes: defaults::MAX_TEXT_BYTES,
            track_for: Millis::new(defaults::TRACK_FOR_MS),
            max_tracked: defaults::MAX_TRACKED,
            report_window: defaults::REPORT_WINDOW,
            review_context: defaults::REVIEW_CONTEXT,
            reports_per_minute: defaults::REPORTS_PER_MINUTE,
            report_burst: defaults::REPORT_BURST,
            gateway_reports_per_minute: defaults::GATEWAY_REPORTS_PER_MINUTE,
            gateway_report_burst: defaults::GATEWAY_REPORT_BURST,
        }
    }
}

impl MessagesConfig {
    /// Text and report limits; a text must fit the frame limit with room for its escaping.
    pub(super) fn validate(&self, limits: &LimitsConfig, problems: &mut Vec<String>) {
        if !(self.reports_per_minute > 0.0 && self.report_burst >= 1.0) {
            problems.push("--reports-per-minute must be > 0 and --report-burst >= 1".into());
        }
        if !(self.gateway_reports_per_minute > 0.0 && self.gateway_report_burst >= 1.0) {
            problems.push(
                "--gateway-reports-per-minute must be > 0 and --gateway-report-burst >= 1".into(),
            );
        }
        if limits.max_frame_bytes < self.max_text_bytes + 1024 {
            problems.push("--max-frame-bytes must exceed --max-text-bytes by 1 KiB".into());
        }
        if self.max_tracked == 0 {
            problems.push("--max-tracked must be at least 1".into());
        }
    }
}
