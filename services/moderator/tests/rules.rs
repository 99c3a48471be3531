//! The rules stage end to end (issue 30, item 1): a real nats-server, the real models, a
//! moderator with a policy file of keyword and regex rules. A matching rule decides
//! without inference (stream and `offpath.classify` alike); the rest reach the models.

mod common;

use std::time::Duration;

use offpath_harness::{scrape, verdicts};
use offpath_protocol::{Action, Verdict, decode_versioned, encode};

const FILE: &str = r#"
default = "chat"

[policies.chat.rules.taunts]
keywords = ["kys", "kill yourself"]
action = "block"
category = "harassment"

[policies.chat.rules.promo]
keywords = ["*casino*"]
allow = ["casino royale"]
regex = ['(?i)\bt\.me/\w+']
action = "flag"
category = "spam"

[policies.chat.rules.no_shortlinks]
links = { deny = ["bit.ly"] }
action = "block"
category = "spam"

# Any link: a person looks, and the models still judge the words.
[policies.chat.rules.any_link]
links = { max = 0 }
action = "flag"
then = "models"

[policies.chat.rules.trial]
keywords = ["pineapple"]
action = "block"
shadow = true
"#;

/// Rule hits are decided with no scores and no inference, named by rule and category,
/// flagged ones queued for review; a text no rule matches gets the models' verdict;
/// per-rule counters move, and `offpath.classify` answers by the rules too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_decide_before_the_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::with_policies(dir.path(), FILE);
    let (env, mut sub, moderator) = common::start(config).await;
    let cases = [
        (
            "r-kys",
            "kys nobody would miss you",
            Action::Block,
            Some("taunts"),
        ),
        ("r-spaced", "k.y.s", Action::Block, Some("taunts")),
        (
            "r-casino",
            "best online casinos, sign up",
            Action::Flag,
            Some("promo"),
        ),
        (
            "r-link",
            "deals at t.me/cheapstuff",
            Action::Flag,
            Some("promo"),
        ),
        (
            "r-film",
            "casino royale is a good film",
            Action::Allow,
            None,
        ),
        ("r-none", "see you at 5?", Action::Allow, None),
        // A rule that lets the models run: its flag prevails over their allow...
        (
            "n-pics",
            "pics from the trip: https://photos.example/a",
            Action::Flag,
            Some("any_link"),
        ),
        // ...and their block over its flag.
        (
            "n-insult",
            "you are a pathetic stupid idiot https://photos.example/a",
            Action::Block,
            None,
        ),
        (
            "r-short",
            "free stuff: bit.ly/x1y2",
            Action::Block,
            Some("no_shortlinks"),
        ),
        // A shadow rule is counted and decides nothing: the models judge it.
        ("r-trial", "pineapple pizza tonight?", Action::Allow, None),
    ];
    for (id, text, ..) in cases {
        common::publish(&env.js, &common::request(id, text)).await;
    }
    let got = verdicts::collect(&mut sub, cases.len(), Duration::from_secs(60)).await;
    for (id, text, action, rule) in cases {
        let v = &got[id];
        assert_eq!(
            (v.action, v.rule.as_deref()),
            (action, rule),
            "{text:?}: {v:?}"
        );
        if id.starts_with("n-") {
            assert!(!v.scores.is_empty(), "the models ran: {v:?}");
            continue;
        }
        if rule.is_some() {
            assert!(
                v.scores.is_empty() && v.inference_ms == 0,
                "no model ran: {v:?}"
            );
            assert_eq!(v.policy.as_ref().map(|p| p.name.as_str()), Some("chat"));
            let category = match rule {
                Some("taunts") => "harassment",
                _ => "spam",
            };
            assert_eq!(v.category.as_deref(), Some(category));
        } else {
            assert!(!v.scores.is_empty(), "the models judged it: {v:?}");
        }
    }
    // Past its deadline a request is too late for the models, not for a rule.
    for (id, text) in [("late-kys", "kys"), ("late-ok", "see you at 5?")] {
        let mut request = common::request(id, text);
        request.sent_at_ms -= 10_000;
        request.deadline_ms = Some(request.sent_at_ms + 5_000);
        common::publish(&env.js, &request).await;
    }
    let late = verdicts::collect(&mut sub, 2, Duration::from_secs(30)).await;
    assert!(
        late.contains_key("late-kys") && late.contains_key("late-ok"),
        "{late:?}"
    );
    assert_eq!(
        (late["late-kys"].action, late["late-kys"].rule.as_deref()),
        (Action::Block, Some("taunts"))
    );
    assert_eq!(late["late-ok"].action, Action::Unmoderated);
    assert_eq!(late["late-ok"].reason.as_deref(), Some("expired"));
    // The synchronous call is screened too.
    let reply = env
        .client
        .request(
            "offpath.classify",
            encode(&common::request("c-kys", "just kill yourself")).into(),
        )
        .await
        .expect("classify");
    let verdict: Verdict = decode_versioned(&reply.payload, 1 << 20).expect("a verdict");
    assert_eq!(
        (verdict.action, verdict.rule.as_deref()),
        (Action::Block, Some("taunts"))
    );
    let (_, metrics) = moderator.get("/metrics").await;
    let hits = |rule: &str, action: &str| {
        scrape::value(
            &metrics,
            &format!(
                "offpath_moderator_rule_hits_total{{policy=\"chat\",rule=\"{rule}\",action=\"{action}\"}}"
            ),
        )
    };
    assert_eq!(hits("taunts", "block"), 4.0);
    assert_eq!(hits("promo", "flag"), 2.0);
    let ruled = scrape::value(
        &metrics,
        "offpath_moderator_requests_total{outcome=\"ruled\"}",
    );
    assert_eq!(ruled, 6.0, "six stream requests settled by rules alone");
    assert_eq!(
        hits("any_link", "flag"),
        2.0,
        "counted when it lets the models run"
    );
    // A policy's verdicts are counted by their final action: the flag a rule raised over
    // the models' allow is a flag (found in review: it was counted as the models' allow).
    let flags = scrape::value(
        &metrics,
        "offpath_moderator_policy_verdicts_total{policy=\"chat\",action=\"flag\"}",
    );
    assert_eq!(
        flags, 3.0,
        "r-casino and r-link by rules, n-pics raised by one"
    );
    let shadow = scrape::value(
        &metrics,
        "offpath_moderator_rule_shadow_hits_total{policy=\"chat\",rule=\"trial\",action=\"block\"}",
    );
    assert_eq!(shadow, 1.0, "the shadow rule matched once");
    assert_eq!(common::wait_empty(&env.js).await, 0);
    moderator.stop().await;
}
