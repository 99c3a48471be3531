//! The review queue: a flagged message goes to `REVIEW` (`offpath.review.<tenant>`) with
//! what a reviewer needs, and a blocked one when its policy says `review_blocked`; allowed
//! ones do not.

mod common;

use std::time::Duration;

use offpath_harness::{scrape, verdicts};
use offpath_protocol::subject::REVIEW_STREAM;
use offpath_protocol::{Action, ReviewItem, ReviewKind};

/// Insults are flagged, profanity blocks, and blocked messages are reviewed too.
const FLAGGING: &str = "default = \"chat\"\n[policies.chat]\nreview_blocked = true\n\
    labels.insult = { action = \"flag\" }\n";

/// Every flagged and blocked message, and only those, is queued once with its text, scores,
/// policy, model, room, sender and times; the verdicts and the queue agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagged_messages_are_queued_for_review() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::with_policies(dir.path(), FLAGGING);
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(60, "after start").await;
    let texts = [
        ("insult-1", "you are a pathetic idiot"),
        ("clean-1", "see you at the station at noon"),
        ("insult-2", "shut up you stupid moron"),
        ("clean-2", "thanks, that recipe was great"),
        ("profane-1", "fuck this shit, fuck it all"),
    ];
    let before = offpath_protocol::now_ms();
    for (id, text) in texts {
        common::publish(&env.js, &common::request(id, text)).await;
    }
    let seen = verdicts::collect(&mut sub, texts.len(), Duration::from_secs(60)).await;
    assert_eq!(seen.len(), texts.len(), "a verdict for every request");
    let flagged: Vec<&str> = texts
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| matches!(seen[*id].action, Action::Flag | Action::Block))
        .collect();
    assert!(
        flagged.contains(&"insult-1") && !flagged.contains(&"clean-1"),
        "the policy flags insults only: {flagged:?}"
    );
    assert_eq!(seen["profane-1"].action, Action::Block, "profanity blocks");

    let mut stream = env
        .js
        .get_stream(REVIEW_STREAM)
        .await
        .expect("REVIEW stream");
    // An item is stored after its verdict (and before the request is acked).
    let mut queued = 0;
    for _ in 0..100 {
        queued = stream.info().await.expect("info").state.messages;
        if queued >= flagged.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = stream
        .info()
        .await
        .expect("info")
        .state
        .messages
        .max(queued);
    assert_eq!(queued, flagged.len() as u64, "one item per flagged message");
    let mut ids = Vec::new();
    for seq in 1..=queued {
        let raw = stream.get_raw_message(seq).await.expect("item");
        assert_eq!(raw.subject.as_str(), "offpath.review.acme");
        let item: ReviewItem = serde_json::from_slice(&raw.payload).expect("a ReviewItem");
        let (id, text) = texts
            .iter()
            .find(|(id, _)| *id == item.verdict.id)
            .expect("a request of this test");
        let kind = match item.verdict.action {
            Action::Flag => ReviewKind::Flag,
            _ => ReviewKind::Block,
        };
        assert_eq!(item.kind, kind);
        assert_eq!(item.text, *text);
        assert_eq!(item.verdict, seen[*id], "the verdict as published");
        assert!(item.verdict.judged(text), "text_sha256 binds the text");
        assert!(item.verdict.policy.is_some(), "the policy that flagged it");
        assert!(item.verdict.scores.contains_key("insult"));
        assert!(item.verdict.scores.contains_key("profanity"));
        assert!(item.sent_at_ms >= before && item.queued_at_ms >= item.sent_at_ms);
        ids.push(item.verdict.id);
    }
    ids.sort();
    let mut expected: Vec<String> = flagged.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    // Counted once the stream's acknowledgement is back (just after the item is stored).
    let count = |metrics: &str, kind: &str| {
        scrape::value(
            metrics,
            &format!("offpath_moderator_review_items_total{{kind=\"{kind}\"}}"),
        )
    };
    let mut counted = (0.0, 0.0);
    for _ in 0..100 {
        let (_, metrics) = moderator.get("/metrics").await;
        counted = (count(&metrics, "flag"), count(&metrics, "block"));
        if counted.0 + counted.1 >= flagged.len() as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted.0 + counted.1, flagged.len() as f64);
    assert_eq!(counted.1, 1.0, "the blocked message");
    moderator.stop_drained(&env.js).await;
}

/// Without a `REVIEW` stream (a deployment upgraded without `offpath topology`), a flagged
/// request still gets its verdict and leaves `MODERATION` after its last delivery; the lost
/// review item is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_review_stream_does_not_hold_flagged_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::with_policies(dir.path(), FLAGGING);
    let (env, mut sub, moderator) = common::start(config).await;
    moderator.assert_ready(60, "after start").await;
    env.js
        .delete_stream(REVIEW_STREAM)
        .await
        .expect("delete REVIEW");
    common::publish(
        &env.js,
        &common::request("insult-1", "you are a pathetic idiot"),
    )
    .await;
    let seen = verdicts::collect(&mut sub, 1, Duration::from_secs(60)).await;
    assert_eq!(seen["insult-1"].action, Action::Flag);
    let lost = "offpath_moderator_review_items_lost_total";
    let mut counted = 0.0;
    for _ in 0..200 {
        let (_, metrics) = moderator.get("/metrics").await;
        counted = scrape::value(&metrics, lost);
        if counted >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 1.0, "the lost item counted on the last delivery");
    let mut stream = env.js.get_stream("MODERATION").await.expect("MODERATION");
    assert_eq!(
        stream.info().await.expect("info").state.messages,
        0,
        "the request left the work queue"
    );
    moderator.stop_drained(&env.js).await;
}
