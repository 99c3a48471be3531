//! Containment: a poison message, a hung inference thread and a killed moderator cost
//! nobody else their verdict.

mod common;

use offpath_ops::cli::Millis;
use std::time::Duration;

use offpath_harness::{http, verdicts};
use offpath_moderator::Faults;

const MARKER: &str = "__offpath_poison__";

/// A text that panics the pipeline is dead-lettered after `max_deliver` deliveries while
/// 500 requests published around it all get verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_isolated_and_dead_lettered() {
    let faults = Faults {
        panic_marker: Some(MARKER.into()),
        ..Faults::default()
    };
    let (env, mut verdict_sub, moderator) = common::start(common::config(faults)).await;
    let mut dlq = verdicts::subscribe_dead_letters(&env.client).await;
    for i in 0..500 {
        if i == 250 {
            common::publish(
                &env.js,
                &common::request("poison", &format!("hello {MARKER}")),
            )
            .await;
        }
        common::publish(
            &env.js,
            &common::request(&format!("ok-{i}"), "have a nice day"),
        )
        .await;
    }
    let verdicts = verdicts::collect(&mut verdict_sub, 500, Duration::from_secs(60)).await;
    assert_eq!(
        verdicts.len(),
        500,
        "every neighbour of the poison got its verdict"
    );
    let letters = verdicts::dead_letters(&mut dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id.as_deref(), Some("poison"));
    assert_eq!(letters[0].reason, "inference_panicked");
    assert_eq!(letters[0].deliveries, common::topology().max_deliver as u64);
    assert!(!verdicts.contains_key("poison"));
    moderator.stop_drained(&env.js).await;
}

/// With every batch of the first inference thread hanging, the watchdog terminates the
/// run, abandons and replaces the thread, the batch is retried, and every request still
/// gets its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_thread_is_replaced_and_work_retried() {
    let config = offpath_moderator::Config {
        inference: offpath_moderator::InferenceConfig {
            batch_deadline: Millis::new(1_000),
            ..common::config(common::hung_first_thread()).inference
        },
        ..common::config(common::hung_first_thread())
    };
    let (env, mut sub, moderator) = common::start(config).await;
    for i in 0..50 {
        common::publish(&env.js, &common::request(&format!("h-{i}"), "good morning")).await;
    }
    let verdicts = verdicts::collect(&mut sub, 50, Duration::from_secs(60)).await;
    assert_eq!(verdicts.len(), 50);
    moderator.stop_drained(&env.js).await;
}

/// A moderator killed mid-batch loses nothing: a second moderator on the same consumer
/// finishes the work (redelivery after ack_wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_moderator_loses_nothing() {
    let slow = common::slow_batches(300);
    let (env, mut sub, first) = common::start(common::config(slow)).await;
    for i in 0..100 {
        common::publish(
            &env.js,
            &common::request(&format!("k-{i}"), "anyone up for lunch?"),
        )
        .await;
    }
    // Let it take some work, then kill it in the middle of a batch.
    let early = verdicts::collect(&mut sub, 1, Duration::from_secs(30)).await;
    assert!(!early.is_empty());
    first.kill();
    let second = common::Moderator::start(&env.server, common::config(Faults::default())).await;
    // Verdicts seen before the kill count too: collect until all 100 ids are covered.
    let mut verdicts = early;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while verdicts.len() < 100 {
            verdicts.extend(verdicts::collect(&mut sub, 1, Duration::from_secs(60)).await);
        }
    })
    .await;
    let missing: Vec<String> = (0..100)
        .map(|i| format!("k-{i}"))
        .filter(|id| !verdicts.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "no verdict for {missing:?}");
    second.stop_drained(&env.js).await;
}

/// `/readyz` turns not ready while requests are in flight and inference makes no
/// progress (the only thread hangs), ready again once the watchdog has replaced it, and
/// stays ready while idle afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_a_hung_model() {
    let config = offpath_moderator::Config {
        inference: offpath_moderator::InferenceConfig {
            inference_threads: 1,
            batch_deadline: Millis::new(4_000),
            ..common::config(common::hung_first_thread()).inference
        },
        intake: offpath_moderator::IntakeConfig {
            stall_after: Millis::new(1_000),
            ..common::config(common::hung_first_thread()).intake
        },
        ..common::config(common::hung_first_thread())
    };
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(10, "after loading").await;
    assert_eq!(moderator.get("/healthz").await.0, 200);
    common::publish(&env.js, &common::request("stuck-1", "hello there")).await;
    let (_, body) = http::wait_until(
        moderator.http,
        "/readyz",
        Duration::from_secs(6),
        |status, _| status == 503,
    )
    .await
    .expect("not ready while the model hangs");
    assert!(body.contains("no inference progress"), "{body}");
    let verdicts = verdicts::collect(&mut sub, 1, Duration::from_secs(30)).await;
    assert!(
        verdicts.contains_key("stuck-1"),
        "verdict after the thread was replaced"
    );
    moderator.assert_ready(5, "again after recovery").await;
    // Idle after the recovery, for longer than stall_after: nothing is held, so still ready.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, body) = moderator.get("/readyz").await;
    assert_eq!(status, 200, "idle after recovery but {body}");
    let (_, metrics) = moderator.get("/metrics").await;
    for name in [
        "offpath_moderator_inference_cancelled_total",
        "offpath_moderator_threads_replaced_total",
    ] {
        common::assert_counted(&metrics, name, 1.0);
    }
    moderator.stop().await;
}

/// A poison message that a rule with `then = "models"` blocks is not dead-lettered after
/// its last delivery: the rule's block is its verdict (before, the rule's say was lost
/// with the dead letter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_a_rule_blocks_gets_the_rules_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = "default = \"chat\"\n[policies.chat.rules.marked]\n\
        keywords = [\"hello\"]\naction = \"block\"\nthen = \"models\"\n";
    let config = offpath_moderator::Config {
        faults: Faults {
            panic_marker: Some(MARKER.into()),
            ..Faults::default()
        },
        ..common::with_policies(dir.path(), policies)
    };
    let (env, mut verdict_sub, moderator) = common::start(config).await;
    let mut dlq = verdicts::subscribe_dead_letters(&env.client).await;
    let text = format!("hello {MARKER}");
    common::publish(&env.js, &common::request("poison", &text)).await;
    let verdicts = verdicts::collect(&mut verdict_sub, 1, Duration::from_secs(60)).await;
    let verdict = &verdicts["poison"];
    assert_eq!(
        verdict.action,
        offpath_protocol::Action::Block,
        "{verdict:?}"
    );
    assert_eq!(verdict.rule.as_deref(), Some("marked"));
    assert!(verdict.scores.is_empty(), "no model answered: {verdict:?}");
    let letters = verdicts::dead_letters(&mut dlq, 1, Duration::from_secs(2)).await;
    assert!(letters.is_empty(), "no dead letter: {letters:?}");
    moderator.stop_drained(&env.js).await;
}
