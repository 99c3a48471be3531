//! `/metrics` is complete from the start: every series an alert or a dashboard reads is
//! there (labelled counters at 0) before the first event, and `promtool check metrics`
//! accepts the rendering before and after traffic. One test per binary: the Prometheus
//! recorder is process-wide.

mod common;

use std::time::Duration;

use offpath_harness::{scrape, verdicts};
use offpath_moderator::Faults;
use offpath_protocol::DecodeError;

/// Series without labels present right after start (besides `process_*`).
const UNLABELLED: [&str; 26] = [
    "offpath_moderator_batch_size_count",
    "offpath_moderator_batch_size_bucket{le=\"1\"}",
    "offpath_moderator_inference_seconds_count",
    "offpath_moderator_queue_seconds_count",
    "offpath_moderator_last_progress_timestamp_seconds",
    "offpath_moderator_inference_cancelled_total",
    "offpath_moderator_threads_replaced_total",
    "offpath_moderator_inference_threads",
    "offpath_moderator_cache_hits_total",
    "offpath_moderator_normalised_total",
    "offpath_moderator_extra_windows_total",
    "offpath_moderator_windows_capped_total",
    "offpath_moderator_span_windows_total",
    "offpath_moderator_consumer_rebinds_total",
    "offpath_moderator_topology_drift_total",
    "offpath_moderator_consumer_pending",
    "offpath_moderator_consumer_ack_pending",
    "offpath_moderator_sender_evictions_total",
    "offpath_moderator_campaign_evictions_total",
    "offpath_moderator_near_duplicates_total",
    "offpath_moderator_brake_engagements_total",
    "offpath_moderator_brake_held_total",
    "offpath_moderator_brake_untracked_total",
    "offpath_moderator_senders_tracked",
    "offpath_moderator_sender_state_caught_up",
    "offpath_moderator_sender_last_read_timestamp_seconds",
];

/// Series present right after start, each a sample line up to its value.
fn expected() -> Vec<String> {
    let labelled: [(&str, &str, &[&str]); 5] = [
        (
            "offpath_moderator_requests_total",
            "outcome",
            &[
                "verdict",
                "expired",
                "cached",
                "ruled",
                "dead_letter",
                "retried",
                "direct",
                "overloaded",
                "timeout",
                "unavailable",
                "bad_reply",
            ],
        ),
        (
            "offpath_moderator_batch_failures_total",
            "reason",
            &[
                "inference_failed",
                "inference_panicked",
                "inference_cancelled",
                "inference_hung",
                "shutdown",
            ],
        ),
        (
            "offpath_moderator_dead_letters_total",
            "reason",
            &[
                "inference_failed",
                "inference_panicked",
                "inference_cancelled",
                "inference_hung",
            ],
        ),
        (
            "offpath_moderator_nats_errors_total",
            "operation",
            &[
                "bind",
                "pull",
                "progress",
                "nak",
                "ack",
                "publish_verdict",
                "publish_dead_letter",
                "respond",
                "consumer_info",
                "follow_senders",
            ],
        ),
        (
            "offpath_moderator_sender_events_total",
            "outcome",
            &[
                "published",
                "failed",
                "dropped",
                "folded",
                "seen",
                "stale",
                "malformed",
            ],
        ),
    ];
    let mut series = scrape::expected_series(&UNLABELLED, &labelled);
    series.extend(
        DecodeError::REASONS
            .iter()
            .map(|r| format!("offpath_moderator_dead_letters_total{{reason=\"{r}\"}}")),
    );
    for lane in ["interactive", "bulk"] {
        series.push(format!(
            "offpath_moderator_lane_requests_total{{lane=\"{lane}\"}}"
        ));
    }
    series.push("offpath_moderator_interactive_pending".into());
    // The built-in policy (no --policies file), its fallbacks and reloads.
    for action in ["allow", "flag", "block"] {
        series.push(format!(
            "offpath_moderator_policy_verdicts_total{{policy=\"default\",action=\"{action}\"}}"
        ));
    }
    series.push("offpath_moderator_policy_fallbacks_total{reason=\"unknown_policy\"}".into());
    for source in ["file", "bucket"] {
        for outcome in ["applied", "refused"] {
            series.push(format!(
                "offpath_moderator_policy_reloads_total{{source=\"{source}\",outcome=\"{outcome}\"}}"
            ));
        }
    }
    series
}

/// Right after start every series is on `/metrics` (labelled counters at 0, histograms
/// with no sample, process_*, build and model info, the consumer backlog) and promtool
/// accepts it; after a verdict and a dead letter it still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_exists_from_the_start_and_promtool_accepts_it() {
    let env = common::env().await;
    let moderator = common::Moderator::start(&env.server, common::config(Faults::default())).await;
    moderator.assert_ready(60, "at start").await;
    let (status, text) = moderator.get("/metrics").await;
    assert_eq!(status, 200);

    let missing = scrape::missing(&text, expected());
    assert!(
        missing.is_empty(),
        "missing from /metrics: {missing:#?}\n{text}"
    );
    for counter in scrape::series(&text, "offpath_moderator_requests_total") {
        assert_eq!(scrape::value(&text, counter), 0.0, "{counter}");
    }

    let build = scrape::series(&text, "offpath_build_info{");
    assert_eq!(build.len(), 1, "{build:?}");
    assert!(
        build[0].contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build[0].contains("commit=\""),
        "{build:?}"
    );
    assert_eq!(scrape::value(&text, build[0]), 1.0);

    let model = scrape::series(&text, "offpath_moderator_model_info{");
    assert_eq!(model.len(), 1, "{model:?}");
    assert!(
        model[0].contains("name=\"minilm-insult+profanity\""),
        "{model:?}"
    );
    let sha = model[0]
        .split("sha256=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("sha256 label");
    for part in sha.split('+') {
        assert!(
            part.len() == 12 && part.bytes().all(|b| b.is_ascii_hexdigit()),
            "sha256 label {sha:?}: 12 hex digits per model"
        );
    }
    scrape::promtool_check(&text);

    // Traffic: a verdict and a dead letter.
    let mut verdict_sub = verdicts::subscribe(&env.client, "acme").await;
    let mut dead = verdicts::subscribe_dead_letters(&env.client).await;
    common::publish(&env.js, &common::request("m1", "good evening")).await;
    common::publish_raw(
        &env.js,
        "offpath.req.acme",
        b"not json".to_vec(),
        Some("m2"),
    )
    .await;
    let seen = verdicts::collect(&mut verdict_sub, 1, Duration::from_secs(30)).await;
    assert!(seen.contains_key("m1"), "no verdict");
    assert_eq!(
        verdicts::dead_letters(&mut dead, 1, Duration::from_secs(30))
            .await
            .len(),
        1
    );
    common::wait_empty(&env.js).await;
    let (_, text) = moderator.get("/metrics").await;
    let value = |series: &str| scrape::value(&text, &format!("{series} "));
    assert_eq!(
        value("offpath_moderator_dead_letters_total{reason=\"malformed_json\"}"),
        1.0
    );
    assert!(value("offpath_moderator_requests_total{outcome=\"verdict\"}") >= 1.0);
    assert!(value("offpath_moderator_last_progress_timestamp_seconds") > 0.0);
    scrape::promtool_check(&text);
    moderator.stop().await;
}
