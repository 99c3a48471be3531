//! Priority lanes: requests on the interactive lane (`offpath.req.<tenant>.interactive`,
//! hold rooms) are taken before a bulk backlog, and the bulk lane is still served.

mod common;

use offpath_moderator::InferenceConfig;
use offpath_ops::cli::Millis;
use std::time::Duration;

use futures::StreamExt;
use offpath_moderator::Config;
use offpath_protocol::{Priority, Verdict, encode};

/// The id of the next verdict.
async fn next(sub: &mut async_nats::Subscriber) -> String {
    let message = tokio::time::timeout(Duration::from_secs(60), sub.next())
        .await
        .expect("a verdict within 60 s")
        .expect("subscription open");
    serde_json::from_slice::<Verdict>(&message.payload)
        .expect("verdict")
        .id
}

/// Publishes five hold-room requests `held-0` … `held-4` on the interactive lane.
async fn publish_held(js: &async_nats::jetstream::Context) {
    for i in 0..5 {
        let mut request = common::request(&format!("held-{i}"), &format!("hello from kids {i}"));
        request.priority = Some(Priority::High);
        let subject = request.subject();
        assert_eq!(subject, "offpath.req.acme.interactive");
        common::publish_raw(js, &subject, encode(&request), Some(&request.dedup_key())).await;
    }
}

/// With 200 bulk requests queued ahead of them on one slow inference thread and no thread
/// reserved for the interactive lane, interactive requests still get their verdicts within
/// the next few batches, not after the backlog; every bulk request still gets its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interactive_lane_overtakes_a_bulk_backlog() {
    let config = Config {
        inference: InferenceConfig {
            inference_threads: 1,
            interactive_threads: 0,
            max_batch: 8,
            ..common::config(common::slow_batches(100)).inference
        },
        ..common::config(common::slow_batches(100))
    };
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(60, "at start").await;
    for i in 0..200 {
        let request = common::request(&format!("bulk-{i}"), &format!("see you at {i}"));
        assert_eq!(request.subject(), "offpath.req.acme");
        common::publish(&env.js, &request).await;
    }
    let mut order: Vec<String> = Vec::new();
    // The backlog is being worked on: now a user in a hold room sends.
    order.push(next(&mut sub).await);
    publish_held(&env.js).await;
    while order.len() < 205 {
        order.push(next(&mut sub).await);
    }
    let positions: Vec<usize> = (0..5)
        .map(|i| {
            order
                .iter()
                .position(|id| *id == format!("held-{i}"))
                .unwrap_or_else(|| panic!("no verdict for held-{i}"))
        })
        .collect();
    // Queued behind the backlog they would come after ~200 bulk verdicts; with lanes within
    // the batches that were already running or formed (8 each) when they arrived.
    assert!(
        positions.iter().all(|p| *p < 40),
        "interactive verdicts at {positions:?} of 205"
    );
    let bulk = order.iter().filter(|id| id.starts_with("bulk-")).count();
    assert_eq!(bulk, 200, "every bulk request answered");
    let (_, metrics) = moderator.get("/metrics").await;
    let value = |series: &str| offpath_harness::scrape::value(&metrics, series);
    assert_eq!(
        value("offpath_moderator_lane_requests_total{lane=\"interactive\"}"),
        5.0
    );
    assert!(value("offpath_moderator_lane_requests_total{lane=\"bulk\"}") >= 200.0);
    assert!(value("offpath_moderator_lane_verdict_seconds_count{lane=\"interactive\"}") >= 5.0);
    moderator.stop_drained(&env.js).await;
}

/// A request someone waits for does not wait for a bulk batch's inference: with the only
/// shared thread stuck in a bulk batch (it hangs until the watchdog's deadline, 8 s),
/// interactive requests are answered by the thread reserved for their lane meanwhile, and
/// the bulk requests after the watchdog replaced the stuck thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_thread_answers_the_interactive_lane_while_bulk_is_stuck() {
    let config = Config {
        inference: InferenceConfig {
            inference_threads: 1,
            interactive_threads: 1,
            batch_deadline: Millis::new(8_000),
            cancel_grace: Millis::new(500),
            ..common::config(common::hung_first_thread()).inference
        },
        ..common::config(common::hung_first_thread())
    };
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(60, "at start").await;
    for i in 0..20 {
        common::publish(
            &env.js,
            &common::request(&format!("bulk-{i}"), "see you later"),
        )
        .await;
    }
    // Let the shared thread take its (hanging) batch first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish_held(&env.js).await;
    let started = std::time::Instant::now();
    let mut held = Vec::new();
    while held.len() < 5 {
        let id = next(&mut sub).await;
        assert!(
            id.starts_with("held-"),
            "{id} answered before every held request (after {:?})",
            started.elapsed()
        );
        held.push(id);
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "held requests answered only after {:?}: they waited for the stuck thread",
        started.elapsed()
    );
    let mut bulk = 0;
    while bulk < 20 {
        assert!(next(&mut sub).await.starts_with("bulk-"));
        bulk += 1;
    }
    let (_, metrics) = moderator.get("/metrics").await;
    let value = |series: &str| offpath_harness::scrape::value(&metrics, series);
    assert_eq!(value("offpath_moderator_inference_threads"), 2.0);
    moderator.stop_drained(&env.js).await;
}
