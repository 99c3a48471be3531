//! Readiness tells the truth: an idle moderator stays ready, a moderator whose JetStream
//! consumer or stream is deleted re-creates it and keeps moderating, and one that cannot
//! bind for `--rebind-give-up-ms` stops with an error instead of pretending to be ready.

mod common;

use offpath_moderator::IntakeConfig;
use offpath_ops::cli::Millis;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use offpath_harness::{http, testing, verdicts};
use offpath_moderator::{Config, Faults};

const CONSUMER: &str = "moderator";
const STREAM: &str = "MODERATION";

/// Waits until `MODERATION` and its `moderator` consumer exist again.
async fn wait_recreated(js: &jetstream::Context) {
    for _ in 0..200 {
        if let Ok(stream) = js.get_stream(STREAM).await
            && stream.consumer_info(CONSUMER).await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the moderator never re-created {STREAM}/{CONSUMER}");
}

/// Waits for the verdict of `id`, skipping others: a request whose ack was lost with the
/// consumer is redelivered and its verdict published again (at least once).
async fn wait_verdict(sub: &mut async_nats::Subscriber, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if verdicts::collect(sub, 1, Duration::from_secs(1))
            .await
            .contains_key(id)
        {
            return;
        }
    }
    panic!("no verdict for {id}");
}

/// Publishes one request and waits for its verdict.
async fn round_trip(env: &common::Env, sub: &mut async_nats::Subscriber, id: &str) {
    common::publish(&env.js, &common::request(id, "good evening")).await;
    wait_verdict(sub, id).await;
}

/// An idle moderator (no traffic for many times `stall_after`) stays ready, before and
/// after it has worked, and `$SRV.STATS` reports nothing in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_moderator_stays_ready() {
    let config = Config {
        intake: IntakeConfig {
            stall_after: Millis::new(300),
            ..common::config(Faults::default()).intake
        },
        ..common::config(Faults::default())
    };
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(20, "after loading").await;
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        for _ in 0..5 {
            let (status, body) = moderator.get("/readyz").await;
            assert_eq!(status, 200, "idle (round {round}) but {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = testing::service_stats(&env.client, "offpath-moderator").await;
        assert_eq!(stats["in_flight"], 0, "{stats}");
        assert_eq!(stats["ready"], true, "{stats}");
        round_trip(&env, &mut sub, &format!("idle-{round}")).await;
    }
    moderator.stop().await;
}

/// Started without its consumer, the moderator creates it; with the consumer deleted and
/// then the whole `MODERATION` stream deleted, it re-creates what is missing, binds again,
/// is ready again and moderates requests published afterwards; `run` never returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_consumer_and_stream_are_recreated() {
    let env = common::env().await;
    let mut sub = verdicts::subscribe(&env.client, "acme").await;
    let requests = env.js.get_stream(STREAM).await.expect("stream");
    requests.delete_consumer(CONSUMER).await.expect("delete");
    let moderator = common::Moderator::start(&env.server, common::config(Faults::default())).await;
    moderator
        .assert_ready(20, "after creating the consumer at start-up")
        .await;
    round_trip(&env, &mut sub, "before").await;

    requests.delete_consumer(CONSUMER).await.expect("delete");
    // Published while the consumer is gone: kept by the stream, moderated after the rebind.
    common::publish(&env.js, &common::request("meanwhile", "hello")).await;
    wait_recreated(&env.js).await;
    wait_verdict(&mut sub, "meanwhile").await;
    moderator
        .assert_ready(20, "after the consumer was re-created")
        .await;
    round_trip(&env, &mut sub, "after-consumer").await;

    env.js.delete_stream(STREAM).await.expect("delete stream");
    wait_recreated(&env.js).await;
    moderator
        .assert_ready(20, "after the stream was re-created")
        .await;
    round_trip(&env, &mut sub, "after-stream").await;

    assert!(!moderator.has_returned(), "run returned after a rebind");
    let (_, metrics) = moderator.get("/metrics").await;
    common::assert_counted(&metrics, "offpath_moderator_consumer_rebinds_total", 2.0);
    moderator.stop().await;
}

/// A moderator that cannot bind (another stream holds the request subjects, so
/// `MODERATION` cannot be created) is not ready, says why, and after `--rebind-give-up-ms`
/// `run` returns an error: the process exits non-zero instead of idling as if healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbindable_moderator_gives_up_with_an_error() {
    let env = common::env().await;
    env.js.delete_stream(STREAM).await.expect("delete stream");
    env.js
        .create_stream(stream::Config {
            name: "SQUATTER".into(),
            subjects: vec!["offpath.req.*".into()],
            ..Default::default()
        })
        .await
        .expect("squatter stream");
    let config = Config {
        intake: IntakeConfig {
            rebind_give_up: Millis::new(3_000),
            ..common::config(Faults::default()).intake
        },
        ..common::config(Faults::default())
    };
    let moderator = common::Moderator::start(&env.server, config).await;
    let (status, reason) = http::wait_until(
        moderator.http,
        "/readyz",
        Duration::from_secs(5),
        |status, body| status == 200 || body.contains("consumer not bound"),
    )
    .await
    .expect("/readyz says the consumer is not bound");
    assert_ne!(status, 200, "ready without a consumer: {reason}");
    assert!(!moderator.has_returned(), "gave up before the give-up time");
    let returned = moderator.returned(Duration::from_secs(30)).await;
    match returned {
        Some(Err(err)) => assert!(err.to_string().contains("consumer"), "{err}; {reason}"),
        other => panic!("run should return an error after giving up, got {other:?}"),
    }
}
