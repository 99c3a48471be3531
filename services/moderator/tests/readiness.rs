//! Readiness tells the truth: an idle moderator stays ready.

mod common;

use std::time::Duration;

use offpath_moderator::{Config, Faults};

/// Waits for the verdict of `id`, skipping others: a request whose ack was lost with the
/// consumer is redelivered and its verdict published again (at least once).
async fn wait_verdict(sub: &mut async_nats::Subscriber, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if common::verdicts(sub, 1, Duration::from_secs(1))
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
    let env = common::env().await;
    let mut sub = env
        .client
        .subscribe("offpath.verdict.acme.>")
        .await
        .expect("subscribe");
    let config = Config {
        stall_after_ms: 300,
        ..common::config(Faults::default())
    };
    let moderator = common::Moderator::start(&env.server, config).await;
    common::wait_ready(moderator.http, Duration::from_secs(20))
        .await
        .expect("ready after loading");
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        for _ in 0..5 {
            let (status, body) = common::http_get(moderator.http, "/readyz").await;
            assert_eq!(status, 200, "idle (round {round}) but {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = common::service_stats(&env.client).await;
        assert_eq!(stats["in_flight"], 0, "{stats}");
        assert_eq!(stats["ready"], true, "{stats}");
        round_trip(&env, &mut sub, &format!("idle-{round}")).await;
    }
    moderator.stop().await;
}
