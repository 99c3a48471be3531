//! Policy hot reload: SIGHUP reads the policy file again while requests flow. Its own test
//! binary: it signals its own process, which must hold no other test's moderator.

mod common;

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, raise};
use offpath_harness::scrape;
use offpath_moderator::{Config, Faults};
use offpath_protocol::Action;

/// Insults are blocked.
const BLOCKING: &str = "default = \"chat\"\n[policies.chat]\n";
/// The same policy name; insults only flagged.
const FLAGGING: &str =
    "default = \"chat\"\n[policies.chat]\nlabels.harassment = { action = \"flag\" }\n";

/// Publishes `n` insults with ids `<prefix>-<i>`, distinct texts (no cache), 5 ms apart.
async fn publish_insults(env: &common::Env, prefix: &str, n: usize) {
    for i in 0..n {
        let text = format!("you are a pathetic idiot #{prefix}{i}");
        common::publish(&env.js, &common::request(&format!("{prefix}-{i}"), &text)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// SIGHUP, then waits until the reload counter `outcome` reaches `count`.
async fn sighup(moderator: &common::Moderator, outcome: &str, count: f64) {
    raise(Signal::SIGHUP).expect("raise SIGHUP");
    let series =
        format!("offpath_moderator_policy_reloads_total{{source=\"file\",outcome=\"{outcome}\"}}");
    for _ in 0..100 {
        let (_, metrics) = moderator.get("/metrics").await;
        if scrape::value(&metrics, &series) >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never reached {count}");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write policy file");
}

/// A new file applies on SIGHUP under load without dropping or repeating a request: every
/// request gets exactly one verdict, those published after the reload the new policy's;
/// a bad file is refused (counted) and the policy in force is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_under_load_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policies.toml");
    write(&file, BLOCKING);
    let config = Config {
        policies: Some(file.clone()),
        ..common::config(Faults::default())
    };
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(60, "after start").await;

    // Requests still queued or in inference while the file changes.
    publish_insults(&env, "before", 150).await;
    write(&file, FLAGGING);
    sighup(&moderator, "applied", 1.0).await;
    publish_insults(&env, "after", 100).await;
    write(
        &file,
        "default = \"chat\"\n[policies.chat]\nlabels.insult = { block = 7 }\n",
    );
    sighup(&moderator, "refused", 1.0).await;
    publish_insults(&env, "kept", 20).await;

    let seen = common::receive(&mut sub, 270).await;
    common::assert_answered_once(&seen, 270);
    let version = |id: &str| {
        let verdict = &seen[id][0];
        let policy = verdict.policy.as_ref().expect("policy named");
        assert_eq!(policy.name, "chat");
        (policy.version.clone(), verdict.action)
    };
    let flagged = version("after-0");
    assert_eq!(flagged.1, Action::Flag, "the new policy flags insults");
    for id in (0..100)
        .map(|i| format!("after-{i}"))
        .chain((0..20).map(|i| format!("kept-{i}")))
    {
        assert_eq!(version(&id), flagged, "{id}: published after the reload");
    }
    let before: Vec<_> = (0..150).map(|i| version(&format!("before-{i}"))).collect();
    assert!(
        before.iter().all(|v| *v == flagged || v.1 == Action::Block),
        "before the reload: the old policy (block) or, still queued, the new one"
    );
    assert_ne!(
        before[0].0, flagged.0,
        "the first requests were judged by the old file"
    );
    moderator.stop_drained(&env.js).await;
}
