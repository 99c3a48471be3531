//! The fleet's policy bucket: every moderator follows it, so one push changes them all;
//! a moderator started later takes the bucket's value before its first request; SIGHUP
//! does not override it; a bad value is refused by each (counted) with its policies kept;
//! deleting the value sends them back to their file. Its own test binary: it signals its
//! own process.

mod common;

use offpath_moderator::InferenceConfig;
use std::time::Duration;

use offpath_harness::{scrape, verdicts};
use offpath_moderator::{Config, Faults};
use offpath_protocol::Action;
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};

/// Insults are blocked (every moderator's `--policies` file).
const BLOCKING: &str = "default = \"chat\"\n[policies.chat]\n";
/// Pushed to the bucket: insults only flagged.
const FLAGGING: &str =
    "default = \"chat\"\n[policies.chat]\nlabels.harassment = { action = \"flag\" }\n";

/// Waits until `moderator`'s bucket reload counter `outcome` reaches `count`.
async fn reloaded(moderator: &common::Moderator, outcome: &str, count: f64) {
    let series = format!(
        "offpath_moderator_policy_reloads_total{{source=\"bucket\",outcome=\"{outcome}\"}}"
    );
    for _ in 0..200 {
        let (_, metrics) = moderator.get("/metrics").await;
        if scrape::value(&metrics, &series) >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never reached {count}");
}

/// Publishes `n` distinct insults `<prefix>-<i>` and returns each verdict's action.
async fn judge(
    env: &common::Env,
    sub: &mut async_nats::Subscriber,
    prefix: &str,
    n: usize,
) -> Vec<Action> {
    let verdicts = common::judge(env, sub, prefix, n).await;
    verdicts.into_iter().map(|v| v.action).collect()
}

/// One push changes two running moderators and a third started later; a bad push is
/// refused by each, a delete returns them to their files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_changes_the_whole_fleet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policies.toml");
    std::fs::write(&file, BLOCKING).expect("write policy file");
    let config = || Config {
        policies: Some(file.clone()),
        inference: InferenceConfig {
            inference_threads: 1,
            ..common::config(Faults::default()).inference
        },
        ..common::config(Faults::default())
    };
    let env = common::env().await;
    offpath_protocol::topology::ensure_policy_bucket(&env.js, &common::topology())
        .await
        .expect("policy bucket");
    let store = env.js.get_key_value(POLICY_BUCKET).await.expect("bucket");
    let mut sub = verdicts::subscribe(&env.client, "acme").await;
    let fleet = [
        common::Moderator::start(&env.server, config()).await,
        common::Moderator::start(&env.server, config()).await,
    ];
    for moderator in &fleet {
        moderator.assert_ready(60, "after start").await;
    }
    assert!(
        judge(&env, &mut sub, "file", 20)
            .await
            .iter()
            .all(|a| *a == Action::Block)
    );

    store
        .put(POLICY_KEY, common::signed(FLAGGING).into())
        .await
        .expect("push");
    for moderator in &fleet {
        reloaded(moderator, "applied", 1.0).await;
    }
    assert!(
        judge(&env, &mut sub, "pushed", 40)
            .await
            .iter()
            .all(|a| *a == Action::Flag)
    );

    // A stray SIGHUP with a changed file does not split the fleet: the bucket outranks it.
    std::fs::write(&file, "default = \"other\"\n[policies.other]\n").expect("write");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    assert!(
        judge(&env, &mut sub, "hup", 20)
            .await
            .iter()
            .all(|a| *a == Action::Flag),
        "the bucket's policies stay in force after SIGHUP"
    );
    std::fs::write(&file, BLOCKING).expect("write");

    // A moderator started later judges its very first request by the bucket's policies.
    let late = common::Moderator::start(&env.server, config()).await;
    late.assert_ready(60, "after start").await;
    let (_, metrics) = late.get("/metrics").await;
    assert_eq!(
        scrape::value(
            &metrics,
            "offpath_moderator_policy_source{source=\"bucket\"}"
        ),
        1.0,
        "in force before the moderator was ready"
    );
    assert_eq!(
        scrape::value(&metrics, "offpath_moderator_policy_bucket_watching"),
        1.0
    );

    store
        .put(POLICY_KEY, common::signed("default = [").into())
        .await
        .expect("bad push");
    for moderator in fleet.iter().chain([&late]) {
        reloaded(moderator, "refused", 1.0).await;
    }
    assert!(
        judge(&env, &mut sub, "kept", 20)
            .await
            .iter()
            .all(|a| *a == Action::Flag),
        "a refused push keeps the policies in force"
    );

    store
        .put(POLICY_KEY, common::signed("").into())
        .await
        .expect("clear");
    for moderator in &fleet {
        reloaded(moderator, "applied", 2.0).await;
    }
    reloaded(&late, "applied", 2.0).await;
    assert!(
        judge(&env, &mut sub, "back", 20)
            .await
            .iter()
            .all(|a| *a == Action::Block),
        "deleting the value goes back to the file"
    );
    late.stop().await;
    let [a, b] = fleet;
    a.stop().await;
    b.stop_drained(&env.js).await;
}
