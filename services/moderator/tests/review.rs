//! The review queue: a flagged message goes to `REVIEW` (`offpath.review.<tenant>`) with
//! what a reviewer needs, and a blocked one when its policy says `review_blocked`; allowed
//! ones do not.

mod common;

use std::time::Duration;

use offpath_harness::{scrape, verdicts};
use offpath_protocol::subject::REVIEW_STREAM;
use offpath_protocol::{Action, ReviewItem, ReviewKind};

/// Insults are flagged, profanity (a signal, acted on only where a policy opts in) blocks,
/// and blocked messages are reviewed too.
const FLAGGING: &str = "default = \"chat\"\n[policies.chat]\nreview_blocked = true\n\
    labels.harassment = { action = \"flag\" }\nlabels.profanity = { action = \"block\" }\n";

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

/// A report (a request with a v1.1 `report`) publishes no verdict and is always queued, as
/// an item of kind `report` naming the reported message, with the request's context. When
/// its item cannot be stored on the last delivery the request is dead-lettered
/// (`review_unavailable`), not acked and lost as before the fix: a report has no verdict
/// to stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_queued_without_a_verdict_or_dead_lettered() {
    use futures::StreamExt;
    use offpath_protocol::subject::DLQ_STREAM;
    use offpath_protocol::{ContextMessage, DeadLetter, Report, TextSource};

    let (env, mut sub, moderator) = common::start(common::config(Default::default())).await;
    moderator.assert_ready(60, "after start").await;
    let report = |id: &str, message_id: &str| offpath_protocol::ModerationRequest {
        report: Some(Report {
            message_id: message_id.into(),
            reporter: "bob".into(),
            reason: "creepy".into(),
            message_sent_at_ms: 7,
            text_source: TextSource::Gateway,
        }),
        context: vec![ContextMessage {
            id: "gw.0".into(),
            sender: "alice".into(),
            text: "hello".into(),
            sent_at_ms: 6,
        }],
        ..common::request(id, "come to my place tonight, alone")
    };
    common::publish(&env.js, &report("report-1", "gw.1")).await;
    let mut stream = env.js.get_stream(REVIEW_STREAM).await.expect("REVIEW");
    let mut queued = 0;
    for _ in 0..200 {
        queued = stream.info().await.expect("info").state.messages;
        if queued > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(queued, 1, "the report is queued");
    let raw = stream.get_raw_message(1).await.expect("item");
    let item: ReviewItem = serde_json::from_slice(&raw.payload).expect("a ReviewItem");
    assert_eq!(item.kind, ReviewKind::Report);
    assert_eq!(
        item.verdict.id, "gw.1",
        "the reported message, not the report"
    );
    assert_eq!(item.sent_at_ms, 7, "when the reported message was sent");
    assert_eq!(
        item.report.as_ref().map(|r| r.reporter.as_str()),
        Some("bob")
    );
    assert_eq!(item.context.len(), 1);
    assert!(item.verdict.judged("come to my place tonight, alone"));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sub.next())
            .await
            .is_err(),
        "no verdict for a report"
    );

    env.js
        .delete_stream(REVIEW_STREAM)
        .await
        .expect("delete REVIEW");
    common::publish(&env.js, &report("report-2", "gw.2")).await;
    let mut dlq = env.js.get_stream(DLQ_STREAM).await.expect("DLQ");
    let mut letters = 0;
    for _ in 0..200 {
        letters = dlq.info().await.expect("info").state.messages;
        if letters > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(letters, 1, "the report is kept as a dead letter");
    let raw = dlq.get_raw_message(1).await.expect("letter");
    let letter: DeadLetter = serde_json::from_slice(&raw.payload).expect("a DeadLetter");
    assert_eq!(letter.reason, "review_unavailable");
    assert_eq!(letter.id.as_deref(), Some("gw.2"));
    let (_, metrics) = moderator.get("/metrics").await;
    assert_eq!(
        scrape::value(
            &metrics,
            "offpath_moderator_dead_letters_total{reason=\"review_unavailable\"}"
        ),
        1.0
    );
    assert_eq!(
        common::wait_empty(&env.js).await,
        0,
        "the request left the work queue"
    );
    moderator.stop_drained(&env.js).await;
}
