//! What [`super::ensure`] reports instead of changing: the settings of an existing stream
//! or consumer that differ from this process's configuration.

use async_nats::jetstream::{consumer, stream};

use crate::subject::MODERATOR_CONSUMER;

/// A setting of an existing stream or consumer that differs from this process's
/// configuration. [`super::ensure`] reports it and leaves it alone: `offpath topology` owns the
/// settings (an operator may have raised replicas or limits on purpose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// `stream MODERATION` or `consumer MODERATION/moderator`.
    pub object: String,
    /// The setting, e.g. `num_replicas`.
    pub setting: &'static str,
    /// What the server has.
    pub existing: String,
    /// What this process would have created.
    pub configured: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} has {} = {} (this process would create {}); left as it is",
            self.object, self.setting, self.existing, self.configured
        )
    }
}

/// Every setting [`super::ensure`] compares and may report as a [`Drift`]: the streams', then the
/// moderators' consumer's.
pub const DRIFT_SETTINGS: &[&str] = &[
    "subjects",
    "retention",
    "num_replicas",
    "max_bytes",
    "max_age",
    "max_message_size",
    "duplicate_window",
    "ack_wait",
    "max_deliver",
    "max_ack_pending",
];

pub(super) fn stream_drift(existing: &stream::Config, wanted: &stream::Config) -> Vec<Drift> {
    let debug = |value: &dyn std::fmt::Debug| format!("{value:?}");
    differences(
        format!("stream {}", wanted.name),
        [
            (
                "subjects",
                debug(&existing.subjects),
                debug(&wanted.subjects),
            ),
            (
                "retention",
                debug(&existing.retention),
                debug(&wanted.retention),
            ),
            (
                "num_replicas",
                existing.num_replicas.max(1).to_string(),
                wanted.num_replicas.max(1).to_string(),
            ),
            (
                "max_bytes",
                limit(existing.max_bytes),
                limit(wanted.max_bytes),
            ),
            ("max_age", debug(&existing.max_age), debug(&wanted.max_age)),
            (
                "max_message_size",
                limit(existing.max_message_size.into()),
                limit(wanted.max_message_size.into()),
            ),
            (
                "duplicate_window",
                debug(&existing.duplicate_window),
                debug(&wanted.duplicate_window),
            ),
        ],
    )
}

/// A size limit as the server means it: 0 and -1 both mean none.
fn limit(value: i64) -> String {
    if value <= 0 {
        "unlimited".into()
    } else {
        value.to_string()
    }
}

pub(super) fn consumer_drift(
    stream: &str,
    existing: &consumer::pull::Config,
    wanted: &consumer::pull::Config,
) -> Vec<Drift> {
    differences(
        format!("consumer {stream}/{MODERATOR_CONSUMER}"),
        [
            (
                "ack_wait",
                format!("{:?}", existing.ack_wait),
                format!("{:?}", wanted.ack_wait),
            ),
            (
                "max_deliver",
                existing.max_deliver.to_string(),
                wanted.max_deliver.to_string(),
            ),
            (
                "max_ack_pending",
                existing.max_ack_pending.to_string(),
                wanted.max_ack_pending.to_string(),
            ),
        ],
    )
}

/// The rows `(setting, existing, configured)` of `object` whose two values differ.
fn differences(
    object: String,
    rows: impl IntoIterator<Item = (&'static str, String, String)>,
) -> Vec<Drift> {
    rows.into_iter()
        .filter(|(_, existing, configured)| existing != configured)
        .map(|(setting, existing, configured)| Drift {
            object: object.clone(),
            setting,
            existing,
            configured,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_nats::jetstream::stream::RetentionPolicy;

    use super::*;
    use crate::topology::{Stream, TopologyConfig};

    /// Every setting the comparisons can report is listed in [`DRIFT_SETTINGS`], in order.
    #[test]
    fn drift_settings_list_every_compared_setting() {
        let base = TopologyConfig::default();
        let other = TopologyConfig {
            replicas: 3,
            duplicate_window: Duration::from_secs(1),
            requests: crate::topology::Retention {
                max_age: Duration::from_secs(1),
                max_bytes: 1,
            },
            request_max_message_bytes: 1,
            ack_wait: Duration::from_secs(1),
            max_deliver: 1,
            max_ack_pending: 1,
            ..TopologyConfig::default()
        };
        let mut wanted = base.stream(Stream::Moderation);
        wanted.subjects = vec!["elsewhere".into()];
        wanted.retention = RetentionPolicy::Limits;
        let mut settings: Vec<&str> = stream_drift(&other.stream(Stream::Moderation), &wanted)
            .iter()
            .map(|d| d.setting)
            .collect();
        settings.extend(
            consumer_drift(
                "MODERATION",
                &other.moderator_consumer(),
                &base.moderator_consumer(),
            )
            .iter()
            .map(|d| d.setting),
        );
        assert_eq!(settings, DRIFT_SETTINGS);
    }
}
