//! Model hot reload: SIGHUP reads the model directories again while requests flow, and a
//! policy file pushed to the fleet's bucket that pins other model versions loads them. Its
//! own test binary: it signals its own process, which must hold no other test's moderator.

mod common;

use offpath_moderator::InferenceConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, raise};
use offpath_harness::{scrape, verdicts};
use offpath_moderator::{Config, Faults};
use offpath_protocol::Action;
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};

/// A copy of the profanity model (small) in `dir`, to change under the moderator.
fn copy_profanity(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/profanity");
    let dst = dir.join("profanity");
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(&src).expect("read models/profanity") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy");
    }
    dst
}

/// The verdicts' model version with the checkout's insult model and profanity at `version`.
fn versions(profanity: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/minilm-insult");
    let insult = offpath_classifier::Manifest::load(&root).expect("insult manifest");
    format!("{}+{profanity}", insult.version)
}

/// Rewrites `model.toml` in `dir` with `edit`.
fn edit_manifest(dir: &Path, edit: impl Fn(&str) -> String) {
    let path = dir.join("model.toml");
    let text = std::fs::read_to_string(&path).expect("read model.toml");
    std::fs::write(&path, edit(&text)).expect("write model.toml");
}

/// SIGHUP, then waits until the model reload counter `outcome` reaches `count`.
async fn sighup(moderator: &common::Moderator, outcome: &str, count: f64) {
    raise(Signal::SIGHUP).expect("raise SIGHUP");
    let series = format!("offpath_moderator_model_reloads_total{{outcome=\"{outcome}\"}}");
    reaches(moderator, &series, count).await;
}

/// Waits until `series` on `moderator`'s `/metrics` reaches `count`.
async fn reaches(moderator: &common::Moderator, series: &str, count: f64) {
    for _ in 0..200 {
        if metric(moderator, series).await >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never reached {count}");
}

async fn metric(moderator: &common::Moderator, series: &str) -> f64 {
    let (_, metrics) = moderator.get("/metrics").await;
    scrape::value(&metrics, series)
}

/// Publishes `n` requests with ids `<prefix>-<i>`, 5 ms apart; every tenth has the same
/// short text (a spam wave: the cache would answer it).
async fn publish(env: &common::Env, prefix: &str, n: usize) {
    for i in 0..n {
        let text = if i % 10 == 0 {
            "see you all tomorrow".to_string()
        } else {
            format!("meet me at gate {prefix}{i}")
        };
        common::publish(&env.js, &common::request(&format!("{prefix}-{i}"), &text)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A new model version applies on SIGHUP under load: every request gets exactly one
/// verdict, each naming the models that made it, those published after the reload the new
/// ones (a cached assessment of the old models is not reused); the old threads exit. A
/// changed manifest that kept its version, and a manifest whose files do not match, are
/// refused with the models in force kept; a SIGHUP with nothing changed changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_loads_a_new_model_version_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profanity = copy_profanity(dir.path());
    let mut config = common::config(Faults::default());
    config.models[1] = profanity.clone();
    let config = Config {
        inference: InferenceConfig {
            inference_threads: 1,
            interactive_threads: 1,
            ..config.inference
        },
        ..config
    };
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(60, "after start").await;
    let threads = "offpath_moderator_inference_threads";
    assert_eq!(metric(&moderator, threads).await, 2.0);

    publish(&env, "before", 100).await;
    edit_manifest(&profanity, |t| {
        t.replace("version = \"1.9.1\"", "version = \"1.9.1-r2\"")
    });
    sighup(&moderator, "applied", 1.0).await;
    publish(&env, "after", 50).await;
    // A changed manifest with the same version: refused.
    edit_manifest(&profanity, |t| format!("{t}\n# edited\n"));
    sighup(&moderator, "refused", 1.0).await;
    // Files that do not match the manifest (a new version whose model file is truncated).
    edit_manifest(&profanity, |t| t.replace("1.9.1-r2", "1.9.1-r3"));
    let onnx = profanity.join("model.onnx");
    let bytes = std::fs::read(&onnx).expect("read model");
    std::fs::write(&onnx, &bytes[..bytes.len() / 2]).expect("truncate model");
    sighup(&moderator, "refused", 2.0).await;
    // Back to what is in force: unchanged.
    std::fs::write(&onnx, &bytes).expect("restore model");
    edit_manifest(&profanity, |t| {
        t.replace("1.9.1-r3", "1.9.1-r2")
            .replace("\n# edited\n", "")
    });
    sighup(&moderator, "unchanged", 1.0).await;
    publish(&env, "kept", 20).await;

    let seen = common::receive(&mut sub, 170).await;
    common::assert_answered_once(&seen, 170);
    let version = |id: &str| seen[id][0].model.version.clone();
    for id in (0..50)
        .map(|i| format!("after-{i}"))
        .chain((0..20).map(|i| format!("kept-{i}")))
    {
        assert_eq!(
            version(&id),
            versions("1.9.1-r2"),
            "{id}: published after the reload"
        );
    }
    let (old, new) = (versions("1.9.1"), versions("1.9.1-r2"));
    assert_eq!(version("before-0"), old, "judged by the old models");
    assert!(
        (0..100).all(|i| [&old, &new].contains(&&version(&format!("before-{i}")))),
        "before the reload: the old models or, still queued, the new ones"
    );
    // The old generation's threads exited after their batches.
    for _ in 0..100 {
        if metric(&moderator, threads).await == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&moderator, threads).await, 2.0, "old threads exited");
    let info =
        format!("offpath_moderator_model_info{{name=\"minilm-insult+profanity\",version=\"{new}\"");
    let (_, metrics) = moderator.get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&info) && l.ends_with(" 1")),
        "model_info names the new models:\n{metrics}"
    );
    moderator.stop_drained(&env.js).await;
}

/// Pushed to the bucket: insults only flagged, written for profanity 1.9.1-r2.
const PINNED: &str = "default = \"chat\"\n[policies.chat]\nlabels.harassment = { action = \"flag\" }\n\
    [models]\nprofanity = \"1.9.1-r2\"\n";

/// A policy file pushed to the fleet's bucket that pins a model version the moderators have
/// not loaded: a moderator whose model directory holds it loads it and puts the pushed
/// policies in force with it; one whose directory does not refuses both (its models and
/// policies kept, each refusal counted) until its files arrive and it gets SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_pinning_a_new_model_version_switches_each_moderator_that_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = common::env().await;
    offpath_protocol::topology::ensure_policy_bucket(&env.js, &common::topology())
        .await
        .expect("policy bucket");
    let store = env.js.get_key_value(POLICY_BUCKET).await.expect("bucket");
    let mut sub = verdicts::subscribe(&env.client, "acme").await;
    let mut fleet = Vec::new();
    let mut dirs = Vec::new();
    for host in ["a", "b"] {
        let profanity = copy_profanity(&dir.path().join(host));
        let mut config = common::config(Faults::default());
        config.models[1] = profanity.clone();
        let config = Config {
            inference: InferenceConfig {
                inference_threads: 1,
                interactive_threads: 0,
                ..config.inference
            },
            ..config
        };
        let moderator = common::Moderator::start(&env.server, config).await;
        moderator.assert_ready(60, "after start").await;
        fleet.push(moderator);
        dirs.push(profanity);
    }
    // Host a has the new model's files; host b not yet.
    let bump = |t: &str| t.replace("version = \"1.9.1\"", "version = \"1.9.1-r2\"");
    edit_manifest(&dirs[0], bump);
    store
        .put(POLICY_KEY, common::signed(PINNED).into())
        .await
        .expect("push");
    let bucket = |outcome: &str| {
        format!("offpath_moderator_policy_reloads_total{{source=\"bucket\",outcome=\"{outcome}\"}}")
    };
    let models =
        |outcome: &str| format!("offpath_moderator_model_reloads_total{{outcome=\"{outcome}\"}}");
    // Both moderators run in this process and share its metrics recorder: the counters
    // are the fleet's sums (a: applied, b: refused).
    let (a, b) = (&fleet[0], &fleet[1]);
    reaches(a, &models("applied"), 1.0).await;
    reaches(a, &bucket("applied"), 1.0).await;
    reaches(b, &models("refused"), 1.0).await;
    reaches(b, &bucket("refused"), 1.0).await;
    let (old, new) = (versions("1.9.1"), versions("1.9.1-r2"));
    for verdict in common::judge(&env, &mut sub, "split", 30).await {
        let version = verdict.model.version;
        if version == new {
            assert_eq!(verdict.action, Action::Flag, "the pushed policy");
        } else {
            assert_eq!(version, old, "model version");
            assert_eq!(verdict.action, Action::Block, "b kept its policy");
        }
    }

    // Host b's files arrive; SIGHUP (both moderators get it: a's files are unchanged).
    edit_manifest(&dirs[1], bump);
    raise(Signal::SIGHUP).expect("raise SIGHUP");
    reaches(b, &models("applied"), 2.0).await;
    reaches(b, &bucket("applied"), 2.0).await;
    reaches(a, &models("unchanged"), 1.0).await;
    for verdict in common::judge(&env, &mut sub, "together", 30).await {
        assert_eq!(verdict.model.version, new);
        assert_eq!(verdict.action, Action::Flag);
        let policy = verdict.policy.expect("the pushed policy named");
        assert_eq!(policy.name, "chat");
    }

    // Again from a pinned value in force: r3 pushed, only a holds it; b's files arrive
    // later and SIGHUP puts the pushed value in force there (the one in force pins r2).
    let bump = |t: &str| t.replace("1.9.1-r2", "1.9.1-r3");
    edit_manifest(&dirs[0], bump);
    store
        .put(
            POLICY_KEY,
            common::signed(&PINNED.replace("1.9.1-r2", "1.9.1-r3")).into(),
        )
        .await
        .expect("push r3");
    reaches(a, &models("applied"), 3.0).await;
    reaches(b, &models("refused"), 2.0).await;
    edit_manifest(&dirs[1], bump);
    raise(Signal::SIGHUP).expect("raise SIGHUP");
    reaches(b, &models("applied"), 4.0).await;
    reaches(b, &bucket("applied"), 4.0).await;
    let newest = versions("1.9.1-r3");
    for verdict in common::judge(&env, &mut sub, "r3", 30).await {
        assert_eq!(verdict.model.version, newest);
        assert_eq!(verdict.action, Action::Flag);
    }
    for moderator in fleet {
        moderator.stop_drained(&env.js).await;
    }
}
