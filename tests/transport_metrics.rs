//! The transport's `/metrics` is complete from the start: every series an alert or a
//! dashboard reads is there (labelled counters at 0) before the first event, and
//! `promtool check metrics` accepts the rendering before and after traffic. One test in
//! this binary: the Prometheus recorder is process-wide.

mod common;

use std::time::Duration;

use common::chat::{self, is};
use offpath_harness::{scrape, testing, verdicts};
use offpath_protocol::Action;

const WAIT: Duration = Duration::from_secs(30);

/// Series present right after start, each a sample line up to its value.
fn expected() -> Vec<String> {
    let codes = offpath_transport::frames::ErrorCode::ALL.map(|c| c.as_str());
    let labelled: [(&str, &str, &[&str]); 9] = [
        (
            "offpath_transport_outbox_shed_total",
            "reason",
            &["full", "shutdown"],
        ),
        (
            "offpath_transport_disconnects_total",
            "reason",
            &[
                "unauthenticated",
                "max_connections",
                "slow_client",
                "shutdown",
            ],
        ),
        ("offpath_transport_frame_errors_total", "code", &codes),
        (
            "offpath_transport_verdicts_total",
            "action",
            &["allow", "flag", "block", "unmoderated"],
        ),
        (
            "offpath_transport_verdicts_ignored_total",
            "reason",
            &["duplicate", "malformed", "other_tenant"],
        ),
        (
            "offpath_transport_verdicts_refused_total",
            "reason",
            &["digest_mismatch", "missing_digest"],
        ),
        (
            "offpath_transport_hold_settled_total",
            "outcome",
            &[
                "allowed",
                "flagged",
                "blocked",
                "deadline_delivered",
                "deadline_dropped",
                "unmoderated_delivered",
                "unmoderated_dropped",
            ],
        ),
        (
            "offpath_transport_nats_errors_total",
            "operation",
            &["classify", "publish", "verdicts", "ack"],
        ),
        (
            "offpath_transport_topology_drift_total",
            "setting",
            &[
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
            ],
        ),
    ];
    let unlabelled = [
        "offpath_transport_connections",
        "offpath_transport_messages_total",
        "offpath_transport_fanout_seconds_count",
        "offpath_transport_verdict_lag_seconds_count",
        "offpath_transport_outbox_depth",
        "offpath_transport_outbox_published_total",
        "offpath_transport_slow_clients_total",
        "offpath_transport_held_messages",
        "offpath_transport_fail_closed_retracts_total",
        "offpath_transport_verdict_consumer_bound",
        "offpath_transport_verdict_consumer_shared_total",
        "offpath_transport_last_verdict_timestamp_seconds",
    ];
    scrape::expected_series(&unlabelled, &labelled)
}

/// Right after start every series is on `/metrics` (labelled counters at 0, histograms
/// with no sample, process_*, build info) and promtool accepts it; after messages and a
/// verdict it still does, and the last-verdict time is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_exists_from_the_start_and_promtool_accepts_it() {
    let (server, transport) = chat::gateway(chat::transport_config()).await;
    let text = transport.metrics().await;
    let missing = scrape::missing(&text, expected());
    assert!(
        missing.is_empty(),
        "missing from /metrics: {missing:#?}\n{text}"
    );
    assert_eq!(
        scrape::metric(
            &text,
            "offpath_transport_last_verdict_timestamp_seconds",
            ""
        ),
        0.0
    );
    let build: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("offpath_build_info{"))
        .collect();
    assert_eq!(build.len(), 1, "{build:?}");
    assert!(
        build[0].contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build[0].contains("commit=\"")
            && build[0].ends_with(" 1"),
        "{build:?}"
    );
    scrape::promtool_check(&text);

    // Traffic: two members, a message, its verdict.
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    alice.say("lobby", "hello there", "c1").await;
    let ack = alice.expect(WAIT, is("ack", None)).await.frame;
    let id = ack["id"].as_str().expect("id").to_string();
    bob.expect(WAIT, is("message", Some(&id))).await;
    let verdict = offpath_protocol::Verdict {
        text_sha256: Some(offpath_protocol::text_sha256("hello there")),
        policy: None,
        ..verdicts::sample(&id, Action::Allow, 0.01)
    };
    let js = async_nats::jetstream::new(testing::connect(&server).await);
    verdicts::publish(&js, &verdict).await;
    alice.expect(WAIT, is("verdict", Some(&id))).await;
    let text = transport.metrics().await;
    assert_eq!(
        scrape::metric(&text, "offpath_transport_messages_total", ""),
        1.0
    );
    let last = scrape::metric(
        &text,
        "offpath_transport_last_verdict_timestamp_seconds",
        "",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&last),
        "last verdict at {last}, now {now}"
    );
    scrape::promtool_check(&text);
    transport.stop().await;
}
