//! Named policies end to end: a real nats-server, the real models, a moderator given a
//! policy file; the policy is chosen by tenant, room and the request's `policy` field.

mod common;

use std::time::Duration;

use offpath_classifier::Manifest;
use offpath_harness::{scrape, verdicts};
use offpath_moderator::{Config, Faults, PolicySet};
use offpath_protocol::Action;

const INSULT: &str = "you are a pathetic idiot";
const CLEAN: &str = "can you share the slides";

const FILE: &str = r#"
default = "standard"

[policies.standard]

# Every message blocked: thresholds at 0.
[policies.strict]
models = ["minilm-insult"]
labels.insult = { flag = 0.0, block = 0.0 }

# An insult is only flagged (a human looks); profanity is scored and never acted on.
[policies.lenient]
labels.harassment = { action = "flag" }
labels.profanity = { action = "ignore" }

[tenants.acme.rooms]
kids = "strict"
"#;

/// Verdicts follow the policy of the request's field, else its room, else the default;
/// an unknown policy falls back (counted); a cached assessment is judged by each request's
/// own policy; verdicts name their policy and version; per-policy counters move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_follow_the_selected_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policies.toml");
    std::fs::write(&file, FILE).expect("write policy file");
    let config = Config {
        policies: Some(file.clone()),
        ..common::config(Faults::default())
    };
    let manifests: Vec<Manifest> = config
        .models
        .iter()
        .map(|dir| Manifest::load(dir).expect("manifest"))
        .collect();
    let set = PolicySet::load(&file, &manifests).expect("valid policy file");
    let version = |name: &str| {
        set.policies()
            .find(|p| p.name == name)
            .map(|p| p.version.clone())
            .expect("policy")
    };
    let (env, mut sub, moderator) = common::start(config).await;

    // id, room, requested policy, text, expected action, expected policy
    let cases = [
        (
            "lobby-insult",
            "lobby",
            None,
            INSULT,
            Action::Block,
            "standard",
        ),
        (
            "lobby-clean",
            "lobby",
            None,
            CLEAN,
            Action::Allow,
            "standard",
        ),
        ("kids-clean", "kids", None, CLEAN, Action::Block, "strict"),
        (
            "field-lenient",
            "lobby",
            Some("lenient"),
            INSULT,
            Action::Flag,
            "lenient",
        ),
        (
            "field-over-room",
            "kids",
            Some("standard"),
            CLEAN,
            Action::Allow,
            "standard",
        ),
        (
            "unknown-in-kids",
            "kids",
            Some("nope"),
            CLEAN,
            Action::Block,
            "strict",
        ),
    ];
    for (id, room, policy, text, _, _) in &cases {
        let mut request = common::request(id, text);
        request.room = room.to_string();
        request.policy = policy.map(String::from);
        common::publish(&env.js, &request).await;
    }
    let seen = verdicts::collect(&mut sub, cases.len(), Duration::from_secs(60)).await;
    for (id, _, _, _, action, policy) in &cases {
        let verdict = seen
            .get(*id)
            .unwrap_or_else(|| panic!("no verdict for {id}"));
        let named = verdict
            .policy
            .as_ref()
            .expect("the verdict names its policy");
        assert_eq!(
            (verdict.action, named.name.as_str()),
            (*action, *policy),
            "{id}: {verdict:?}"
        );
        assert_eq!(named.version, version(policy), "{id}");
    }
    assert!(
        !seen["kids-clean"].scores.contains_key("profanity")
            && seen["kids-clean"].scores.contains_key("harassment"),
        "strict reads the insult model only: {:?}",
        seen["kids-clean"].scores
    );
    assert!(seen["lobby-insult"].scores.contains_key("profanity"));

    // The same text again, now surely in the cache: judged by its own policy.
    let mut again = common::request("cached-lenient", INSULT);
    again.policy = Some("lenient".into());
    common::publish(&env.js, &again).await;
    let cached = verdicts::collect(&mut sub, 1, Duration::from_secs(30)).await;
    let cached = &cached["cached-lenient"];
    assert_eq!(cached.action, Action::Flag, "{cached:?}");
    assert_eq!(cached.scores, seen["lobby-insult"].scores);

    let (_, metrics) = moderator.get("/metrics").await;
    let value = |series: &str| scrape::value(&metrics, series);
    assert!(value("offpath_moderator_cache_hits_total") >= 1.0);
    assert_eq!(
        value("offpath_moderator_policy_fallbacks_total{reason=\"unknown_policy\"}"),
        1.0
    );
    assert!(
        value("offpath_moderator_policy_verdicts_total{policy=\"strict\",action=\"block\"}") >= 2.0
    );
    assert!(value("offpath_moderator_policy_verdict_seconds_count{policy=\"strict\"}") >= 2.0);
    assert_eq!(
        value("offpath_moderator_policy_verdicts_total{policy=\"lenient\",action=\"block\"}"),
        0.0,
        "every policy's series exists from the start"
    );
    moderator.stop_drained(&env.js).await;
}

/// A bad policy file stops the moderator before it connects, naming the problem.
#[test]
fn a_bad_policy_file_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policies.toml");
    std::fs::write(&file, "default = \"standard\"\n[policies.strict]\n").expect("write");
    let config = Config {
        policies: Some(file),
        ..common::config(Faults::default())
    };
    let problems = config.validate().expect_err("refused").join("; ");
    assert!(
        problems.contains("--policies: policy file")
            && problems.contains("default: no policy named \"standard\""),
        "{problems}"
    );
}
