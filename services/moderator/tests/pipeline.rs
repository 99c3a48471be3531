//! The moderator end to end, against a real nats-server and the real models.

mod common;

use offpath_ops::cli::Millis;
use std::time::Duration;

use futures::StreamExt;

use offpath_harness::{scrape, verdicts};
use offpath_moderator::Faults;
use offpath_protocol::Action;

const TEXTS: [&str; 8] = [
    "see you at the standup",
    "you are a pathetic idiot",
    "thanks a lot!",
    "fuck off",
    "what a lovely day 🎉",
    "shut up moron",
    "can you share the slides",
    "你好",
];

/// How a label acts by default (its manifest's `signal` and `flag_only`).
#[derive(PartialEq)]
enum Acts {
    Blocks,
    FlagsOnly,
    Signal,
}

/// (name, flag, block, how it acts) of each label, from the manifests.
fn thresholds() -> Vec<(String, f32, f32, Acts)> {
    let mut all = Vec::new();
    for model in ["minilm-insult", "profanity"] {
        let path = common::root().join("models").join(model).join("model.toml");
        let manifest: toml::Value =
            toml::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("toml");
        for label in manifest["labels"].as_array().expect("labels") {
            let f = |k: &str| label[k].as_float().expect("threshold") as f32;
            let is = |k: &str| label.get(k).and_then(toml::Value::as_bool) == Some(true);
            all.push((
                label["name"].as_str().expect("name").to_string(),
                f("flag"),
                f("block"),
                match (is("signal"), is("flag_only")) {
                    (true, _) => Acts::Signal,
                    (false, true) => Acts::FlagsOnly,
                    (false, false) => Acts::Blocks,
                },
            ));
        }
    }
    all
}

/// 2,000 requests give 2,000 verdicts with matching ids, scores in [0, 1] and actions
/// that follow the manifests' thresholds (a signal label, profanity or insult, scored and
/// never acting; a flag-only one never blocking); the request stream ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_a_consistent_verdict() {
    let (env, mut sub, moderator) = common::start(common::config(Faults::default())).await;
    for i in 0..2000 {
        common::publish(
            &env.js,
            // Distinct texts, so every request goes through inference (not the cache).
            &common::request(
                &format!("m-{i}"),
                &format!("{} #{i}", TEXTS[i % TEXTS.len()]),
            ),
        )
        .await;
    }
    let verdicts = verdicts::collect(&mut sub, 2000, Duration::from_secs(120)).await;
    assert_eq!(verdicts.len(), 2000);
    let thresholds = thresholds();
    for i in 0..2000 {
        let verdict = &verdicts[&format!("m-{i}")];
        assert_eq!(verdict.room, "lobby");
        assert_eq!(verdict.scores.len(), thresholds.len());
        let mut expected = Action::Allow;
        for (label, flag, block, acts) in &thresholds {
            let score = verdict.scores[label];
            assert!((0.0..=1.0).contains(&score), "{label} = {score}");
            if *acts == Acts::Signal {
                continue;
            }
            if score >= *block && *acts == Acts::Blocks {
                expected = Action::Block;
            } else if score >= flag.min(*block) && expected == Action::Allow {
                expected = Action::Flag;
            }
        }
        assert_eq!(verdict.action, expected, "{verdict:?}");
        // The category names a label that acts and reached its flag threshold.
        match &verdict.category {
            None => assert_eq!(expected, Action::Allow, "{verdict:?}"),
            Some(category) => {
                let (_, flag, _, acts) = thresholds
                    .iter()
                    .find(|t| &t.0 == category)
                    .expect("a known label");
                assert!(*acts != Acts::Signal && verdict.scores[category] >= *flag);
            }
        }
    }
    assert_eq!(
        verdicts["m-1"].action,
        Action::Block,
        "an insult is blocked"
    );
    assert_eq!(
        verdicts["m-0"].action,
        Action::Allow,
        "small talk is allowed"
    );
    assert_eq!(
        common::wait_empty(&env.js).await,
        0,
        "request stream ends empty"
    );
    let (status, metrics) = moderator.get("/metrics").await;
    assert_eq!(status, 200);
    if let Some(path) = std::env::var_os("OFFPATH_DUMP_METRICS") {
        // For `promtool check metrics` by hand (Debian's prometheus package).
        std::fs::write(path, &metrics).expect("dump /metrics");
    }
    for name in [
        "offpath_moderator_requests_total",
        "offpath_moderator_batch_size",
        "offpath_moderator_inference_seconds",
        "offpath_moderator_queue_seconds",
        "offpath_moderator_last_progress_timestamp_seconds",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name}")),
            "{name} is described"
        );
        assert!(
            metrics.contains(&format!("# TYPE {name}")),
            "{name} is exported"
        );
    }
    assert!(
        metrics.contains("offpath_moderator_inference_seconds_bucket"),
        "a histogram, not a summary"
    );
    let verdicts = scrape::value(
        &metrics,
        "offpath_moderator_requests_total{outcome=\"verdict\"}",
    );
    assert!(verdicts >= 2000.0, "{verdicts} verdicts counted");
    moderator.stop().await;
}

/// Requests past their deadline get `unmoderated` / `expired` without inference.
#[tokio::test]
async fn expired_requests_are_unmoderated() {
    let (env, mut sub, moderator) = common::start(common::config(Faults::default())).await;
    let mut late = common::request("late-1", "hello");
    late.sent_at_ms -= 10_000;
    late.deadline_ms = Some(late.sent_at_ms + 1_000);
    common::publish(&env.js, &late).await;
    let verdicts = verdicts::collect(&mut sub, 1, Duration::from_secs(30)).await;
    let verdict = &verdicts["late-1"];
    assert_eq!(verdict.action, Action::Unmoderated);
    assert_eq!(verdict.reason.as_deref(), Some("expired"));
    assert_eq!(verdict.inference_ms, 0);
    assert!(verdict.scores.is_empty());
    moderator.stop().await;
}

/// Each bad input published raw ends as exactly one dead letter with its reason, and the
/// same moderator keeps serving.
#[tokio::test]
async fn bad_inputs_become_dead_letters() {
    let (env, mut verdict_sub, moderator) = common::start(common::config(Faults::default())).await;
    let mut dlq = verdicts::subscribe_dead_letters(&env.client).await;
    let good = serde_json::to_value(common::request("good-1", "hello")).expect("json");
    let with = |field: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[field] = value;
        serde_json::to_vec(&v).expect("json")
    };
    let table: Vec<(&str, Vec<u8>)> = vec![
        ("malformed_json", b"{not json".to_vec()),
        ("not_an_object", b"[1]".to_vec()),
        ("invalid_utf8", vec![b'{', 0xff, b'}']),
        ("oversized", with("text", "x".repeat(17 * 1024).into())),
        ("unsupported_version", with("v", 2.into())),
        ("missing_field", with("text", serde_json::Value::Null)),
        ("wrong_type", with("sent_at_ms", "now".into())),
        ("unknown_field", with("extra", 1.into())),
        ("invalid_id", with("id", "".into())),
        ("invalid_room", with("room", "a b".into())),
        ("invalid_sender", with("sender", "".into())),
        ("invalid_deadline", with("deadline_ms", 1.into())),
        ("invalid_priority", with("priority", "urgent".into())),
        ("subject_mismatch", with("tenant", "other".into())),
    ];
    for (_, payload) in &table {
        common::publish_raw(&env.js, "offpath.req.acme", payload.clone(), None).await;
    }
    let letters = verdicts::dead_letters(&mut dlq, table.len(), Duration::from_secs(30)).await;
    let mut got: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    let mut want: Vec<&str> = table.iter().map(|(r, _)| *r).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    for letter in &letters {
        assert_eq!(letter.subject, "offpath.req.acme");
        let original = letter.original().expect("base64");
        assert!(
            table.iter().any(|(_, p)| *p == original),
            "original bytes kept"
        );
    }
    common::publish(&env.js, &common::request("good-1", "hello")).await;
    let verdicts = verdicts::collect(&mut verdict_sub, 1, Duration::from_secs(30)).await;
    assert!(
        verdicts.contains_key("good-1"),
        "still serving after bad input"
    );
    assert!(
        verdicts::dead_letters(&mut dlq, 1, Duration::from_millis(500))
            .await
            .is_empty(),
        "exactly one each"
    );
    moderator.stop_drained(&env.js).await;
}

/// A spam wave (the same short text again and again) reuses one inference: verdicts come
/// from the cache, counted in /metrics.
#[tokio::test]
async fn spam_wave_reuses_one_inference() {
    let (env, mut sub, moderator) = common::start(common::config(Faults::default())).await;
    common::publish(
        &env.js,
        &common::request("wave-0", "buy cheap followers now!!!"),
    )
    .await;
    let first = verdicts::collect(&mut sub, 1, Duration::from_secs(30)).await;
    assert!(first["wave-0"].inference_ms > 0 || first["wave-0"].scores.len() == 2);
    for i in 1..=50 {
        common::publish(
            &env.js,
            &common::request(&format!("wave-{i}"), "buy cheap followers now!!!"),
        )
        .await;
    }
    let verdicts = verdicts::collect(&mut sub, 50, Duration::from_secs(30)).await;
    assert_eq!(verdicts.len(), 50);
    assert!(
        verdicts
            .values()
            .all(|v| v.scores == first["wave-0"].scores),
        "same assessment reused"
    );
    let (_, metrics) = moderator.get("/metrics").await;
    let hits = scrape::value(&metrics, "offpath_moderator_cache_hits_total");
    assert!(hits >= 50.0, "{hits} cache hits");
    moderator.stop().await;
}

/// Issue 29 item 4: a verdict says where its category scored highest. A long message
/// whose harassment is one part of it gets a span over that part, and the cached repeat of
/// it the same span; a short insult that decides as a whole gets none.
#[tokio::test]
async fn a_verdict_says_where_its_category_scored() {
    let (env, mut sub, moderator) = common::start(common::config(Faults::default())).await;
    let hostile = "you are a pathetic worthless loser, nobody here wants you";
    let text = format!("see you all at the garden cleanup on sunday morning, and {hostile}");
    for (id, text) in [
        ("long-1", text.as_str()),
        ("long-2", &text),
        ("short", "you idiot"),
    ] {
        common::publish(&env.js, &common::request(id, text)).await;
        // One at a time: the repeat is the cache's.
        verdicts::collect(&mut sub, 1, Duration::from_secs(30))
            .await
            .into_values()
            .for_each(|v| {
                assert_eq!(v.id, id);
                assert_eq!(v.category.as_deref(), Some("harassment"), "{v:?}");
                if id == "short" {
                    assert_eq!(v.span, None, "the whole text decides");
                    return;
                }
                let span = v.span.expect("a span");
                let part = &text[span.start as usize..span.end as usize];
                assert!(
                    part.contains("worthless loser") && !part.contains("garden"),
                    "{part:?}"
                );
                assert!(span.score >= 0.5 && span.score <= 1.0, "{span:?}");
            });
    }
    let (_, metrics) = moderator.get("/metrics").await;
    let hits = scrape::value(&metrics, "offpath_moderator_cache_hits_total");
    assert!(hits >= 1.0, "the repeat came from the cache: {hits} hits");
    let read = scrape::value(&metrics, "offpath_moderator_span_windows_total");
    assert!(
        read >= 2.0,
        "the long text was read again in short windows: {read}"
    );
    moderator.stop().await;
}

/// A batch slower than the consumer's ack_wait (2 s here) is kept alive with in-progress
/// acks: its request is not redelivered while it is being worked on.
#[tokio::test]
async fn slow_batch_is_not_redelivered() {
    let slow = common::slow_batches(3_500);
    let base = common::config(slow);
    let config = offpath_moderator::Config {
        inference: offpath_moderator::InferenceConfig {
            batch_deadline: Millis::new(10_000),
            ..base.inference
        },
        ..base
    };
    let (env, mut sub, moderator) = common::start(config).await;
    common::publish(&env.js, &common::request("slow-1", "good evening")).await;
    let verdicts = verdicts::collect(&mut sub, 1, Duration::from_secs(30)).await;
    assert!(verdicts.contains_key("slow-1"));
    // A redelivered copy would be classified again (3.5 s) and its verdict published again.
    let mut copies = 0;
    let _ = tokio::time::timeout(Duration::from_secs(6), async {
        while sub.next().await.is_some() {
            copies += 1;
        }
    })
    .await;
    assert_eq!(
        copies, 0,
        "kept alive by in-progress acks: never redelivered"
    );
    moderator.stop().await;
}
