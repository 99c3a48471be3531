//! Containment: a poison message, a hung inference thread and a killed moderator cost
//! nobody else their verdict.

mod common;

use std::time::Duration;

use offpath_moderator::Faults;

const MARKER: &str = "__offpath_poison__";

/// A text that panics the pipeline is dead-lettered after `max_deliver` deliveries while
/// 500 requests published around it all get verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_isolated_and_dead_lettered() {
    let env = common::env().await;
    let mut verdict_sub = env
        .client
        .subscribe("offpath.verdict.acme.>")
        .await
        .expect("subscribe");
    let mut dlq = env
        .client
        .subscribe("offpath.dlq.>")
        .await
        .expect("subscribe");
    let faults = Faults {
        panic_marker: Some(MARKER.into()),
        ..Faults::default()
    };
    let moderator = common::Moderator::start(&env.server, common::config(faults)).await;
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
    let verdicts = common::verdicts(&mut verdict_sub, 500, Duration::from_secs(60)).await;
    assert_eq!(
        verdicts.len(),
        500,
        "every neighbour of the poison got its verdict"
    );
    let letters = common::dead_letters(&mut dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id.as_deref(), Some("poison"));
    assert_eq!(letters[0].reason, "inference_panicked");
    assert_eq!(letters[0].deliveries, common::topology().max_deliver as u64);
    assert!(!verdicts.contains_key("poison"));
    assert_eq!(common::wait_empty(&env.js).await, 0);
    moderator.stop().await;
}

/// With every batch of the first inference thread hanging, the watchdog terminates the
/// run, abandons and replaces the thread, the batch is retried, and every request still
/// gets its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_thread_is_replaced_and_work_retried() {
    let env = common::env().await;
    let mut sub = env
        .client
        .subscribe("offpath.verdict.acme.>")
        .await
        .expect("subscribe");
    let faults = Faults {
        hang_thread: Some(0),
        ..Faults::default()
    };
    let config = offpath_moderator::Config {
        batch_deadline_ms: 1_000,
        ..common::config(faults)
    };
    let moderator = common::Moderator::start(&env.server, config).await;
    for i in 0..50 {
        common::publish(&env.js, &common::request(&format!("h-{i}"), "good morning")).await;
    }
    let verdicts = common::verdicts(&mut sub, 50, Duration::from_secs(60)).await;
    assert_eq!(verdicts.len(), 50);
    assert_eq!(common::wait_empty(&env.js).await, 0);
    moderator.stop().await;
}

/// A moderator killed mid-batch loses nothing: a second moderator on the same consumer
/// finishes the work (redelivery after ack_wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_moderator_loses_nothing() {
    let env = common::env().await;
    let mut sub = env
        .client
        .subscribe("offpath.verdict.acme.>")
        .await
        .expect("subscribe");
    let slow = Faults {
        batch_delay_ms: 300,
        ..Faults::default()
    };
    let first = common::Moderator::start(&env.server, common::config(slow)).await;
    for i in 0..100 {
        common::publish(
            &env.js,
            &common::request(&format!("k-{i}"), "anyone up for lunch?"),
        )
        .await;
    }
    // Let it take some work, then kill it in the middle of a batch.
    let early = common::verdicts(&mut sub, 1, Duration::from_secs(30)).await;
    assert!(!early.is_empty());
    first.kill();
    let second = common::Moderator::start(&env.server, common::config(Faults::default())).await;
    // Verdicts seen before the kill count too: collect until all 100 ids are covered.
    let mut verdicts = early;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while verdicts.len() < 100 {
            verdicts.extend(common::verdicts(&mut sub, 1, Duration::from_secs(60)).await);
        }
    })
    .await;
    let missing: Vec<String> = (0..100)
        .map(|i| format!("k-{i}"))
        .filter(|id| !verdicts.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "no verdict for {missing:?}");
    assert_eq!(common::wait_empty(&env.js).await, 0);
    second.stop().await;
}

/// `/readyz` turns not ready while requests are in flight and inference makes no
/// progress (the only thread hangs), ready again once the watchdog has replaced it, and
/// stays ready while idle afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_a_hung_model() {
    let env = common::env().await;
    let mut sub = env
        .client
        .subscribe("offpath.verdict.acme.>")
        .await
        .expect("subscribe");
    let faults = Faults {
        hang_thread: Some(0),
        ..Faults::default()
    };
    let config = offpath_moderator::Config {
        inference_threads: 1,
        batch_deadline_ms: 4_000,
        stall_after_ms: 1_000,
        ..common::config(faults)
    };
    let moderator = common::Moderator::start(&env.server, config).await;
    let ready = |addr| async move { common::http_get(addr, "/readyz").await };
    let mut waited = 0;
    while ready(moderator.http).await.0 != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 200, "never became ready after loading");
    }
    assert_eq!(common::http_get(moderator.http, "/healthz").await.0, 200);
    common::publish(&env.js, &common::request("stuck-1", "hello there")).await;
    let mut saw_not_ready = None;
    for _ in 0..60 {
        let (status, body) = ready(moderator.http).await;
        if status == 503 {
            saw_not_ready = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = saw_not_ready.expect("not ready while the model hangs");
    assert!(body.contains("no inference progress"), "{body}");
    let verdicts = common::verdicts(&mut sub, 1, Duration::from_secs(30)).await;
    assert!(
        verdicts.contains_key("stuck-1"),
        "verdict after the thread was replaced"
    );
    let mut back = false;
    for _ in 0..50 {
        if ready(moderator.http).await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "ready again after recovery");
    // Idle after the recovery, for longer than stall_after: nothing is held, so still ready.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, body) = ready(moderator.http).await;
    assert_eq!(status, 200, "idle after recovery but {body}");
    let (_, metrics) = common::http_get(moderator.http, "/metrics").await;
    for name in [
        "offpath_moderator_inference_cancelled_total",
        "offpath_moderator_threads_replaced_total",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name}")),
            "{name} described"
        );
        let value = common::metric_value(&metrics, name);
        assert!(value >= 1.0, "{name} = {value}");
    }
    moderator.stop().await;
}
