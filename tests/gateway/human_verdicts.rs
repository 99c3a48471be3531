//! Human verdicts (issue 17): a reviewer's `remove` retracts a message whatever the model
//! said, `restore` shows it again (with the text the verdict judged, nothing else), each
//! applied once, end to end against a real nats-server and a real gateway.

use crate::common;

use offpath_ops::cli::Millis;
use std::time::Duration;

use async_nats::jetstream;
use common::chat::{self, Transport, is};
use offpath_harness::{scrape, testing, verdicts};
use offpath_protocol::{Action, HumanReview, ReviewDecision, Verdict, now_ms, text_sha256};

const WAIT: Duration = Duration::from_secs(30);
const NICE: &str = "a perfectly nice message";
const INSULT: &str = "you are a stupid worthless idiot";

/// The model's verdict on message `id` in `room` with `text`.
fn model(id: &str, room: &str, action: Action, text: &str) -> Verdict {
    Verdict {
        room: room.into(),
        text_sha256: Some(text_sha256(text)),
        ..verdicts::sample(id, action, 0.1)
    }
}

/// A reviewer's decision on it; `restore` carries `text`.
fn human(id: &str, room: &str, decision: ReviewDecision, text: &str, at: u64) -> Verdict {
    Verdict {
        review: Some(HumanReview {
            reviewer: "rita".into(),
            decision,
            decided_at_ms: at,
            note: Some("test".into()),
            text: (decision == ReviewDecision::Restore).then(|| text.to_string()),
        }),
        ..model(
            id,
            room,
            decision.action().expect("publishes a verdict"),
            text,
        )
    }
}

async fn human_count(transport: &Transport, decision: &str) -> f64 {
    let metrics = transport.metrics().await;
    scrape::value(
        &metrics,
        &format!("offpath_transport_human_verdicts_total{{decision=\"{decision}\"}}"),
    )
}

/// In a post room: the model allowed it, a reviewer removes it (retracted for everyone,
/// the sender told), a copy of that decision changes nothing, a restore with another text
/// is refused, a restore with the text shows it again.
#[tokio::test]
async fn a_reviewer_removes_and_restores_a_delivered_message() {
    let (server, transport) = chat::gateway(chat::transport_config()).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    let js = jetstream::new(testing::connect(&server).await);
    let id = alice.post("lobby", NICE, "c1").await;
    bob.expect(WAIT, is("message", Some(&id))).await;
    verdicts::publish(&js, &model(&id, "lobby", Action::Allow, NICE)).await;
    alice.expect(WAIT, is("verdict", Some(&id))).await;

    let at = now_ms();
    let remove = human(&id, "lobby", ReviewDecision::Remove, NICE, at);
    verdicts::publish(&js, &remove).await;
    let retract = bob.expect(WAIT, is("retract", Some(&id))).await.frame;
    assert_eq!(retract["reason"], "removed", "{retract}");
    let told = alice.expect(WAIT, is("verdict", Some(&id))).await.frame;
    assert_eq!(
        (&told["action"], &told["reason"]),
        (&"block".into(), &"removed".into())
    );

    // A forged restore of another text: refused, nothing shown.
    let mut forged = human(&id, "lobby", ReviewDecision::Restore, NICE, at + 1);
    if let Some(review) = forged.review.as_mut() {
        review.text = Some("buy cheap pills at spam.example".into());
    }
    verdicts::publish(&js, &forged).await;
    let restore = human(&id, "lobby", ReviewDecision::Restore, NICE, at + 2);
    verdicts::publish(&js, &restore).await;
    let shown = bob.expect(WAIT, is("message", Some(&id))).await.frame;
    assert_eq!(
        shown["text"], NICE,
        "the judged text, not the forged one: {shown}"
    );
    let told = alice.expect(WAIT, is("verdict", Some(&id))).await.frame;
    assert_eq!(
        (&told["action"], &told["reason"]),
        (&"allow".into(), &"restored".into())
    );
    // A copy of the first decision, redelivered after the restore: older, so ignored.
    verdicts::publish(&js, &remove).await;
    let rest = bob.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter().all(|r| r.frame["id"] != id.as_str()),
        "one retract and one restore: {rest:?}"
    );
    // A restore for a message this gateway does not track (its id made up in this
    // gateway's shape): its text and sender would come from the verdict alone.
    let instance = id.split('.').next().expect("instance");
    let made_up = format!("{instance}.{}", "0".repeat(32));
    let spam = "buy cheap pills at spam.example";
    verdicts::publish(
        &js,
        &human(&made_up, "lobby", ReviewDecision::Restore, spam, at + 3),
    )
    .await;
    let rest = bob.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter().all(|r| r.frame["text"] != spam),
        "a restore of an untracked id showed its text: {rest:?}"
    );
    let ignored = scrape::value(
        &transport.metrics().await,
        "offpath_transport_verdicts_ignored_total{reason=\"restore_untracked\"}",
    );
    assert_eq!(ignored, 1.0);
    assert_eq!(human_count(&transport, "remove").await, 1.0);
    assert_eq!(human_count(&transport, "restore").await, 1.0);
    let refused = scrape::value(
        &transport.metrics().await,
        "offpath_transport_verdicts_refused_total{reason=\"digest_mismatch\"}",
    );
    assert_eq!(refused, 1.0, "the forged restore");
    transport.stop().await;
}

/// In a hold room: the model blocked it (never shown); a reviewer restores it and everyone
/// sees it; a copy of the model's verdict arriving later changes nothing.
#[tokio::test]
async fn a_reviewer_restores_a_blocked_held_message() {
    let config = offpath_transport::Config {
        moderation: offpath_transport::ModerationConfig {
            room_policy: vec!["vault=hold:fail_closed".parse().expect("rule")],
            ..chat::transport_config().moderation
        },
        ..chat::transport_config()
    };
    let (server, transport) = chat::gateway(config).await;
    let (mut alice, mut bob) = transport.alice_and_bob("vault").await;
    let js = jetstream::new(testing::connect(&server).await);
    let id = alice.post("vault", INSULT, "c1").await;
    verdicts::publish(&js, &model(&id, "vault", Action::Block, INSULT)).await;
    let told = alice.expect(WAIT, is("verdict", Some(&id))).await.frame;
    assert_eq!(told["action"], "block");

    let restore = human(&id, "vault", ReviewDecision::Restore, INSULT, now_ms());
    verdicts::publish(&js, &restore).await;
    let shown = bob.expect(WAIT, is("message", Some(&id))).await.frame;
    assert_eq!(shown["text"], INSULT);
    verdicts::publish(&js, &model(&id, "vault", Action::Block, INSULT)).await;
    let rest = bob.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter().all(|r| r.frame["id"] != id.as_str()),
        "nothing after the restore: {rest:?}"
    );
    transport.stop().await;
}

/// A reviewer usually decides long after `--track-for-ms` (ten minutes by default): a
/// `remove` of a message the gateway has forgotten still retracts it from the room (it
/// was counted and then silently not applied before the fix).
#[tokio::test]
async fn a_reviewer_removes_a_message_the_gateway_no_longer_tracks() {
    let config = offpath_transport::Config {
        messages: offpath_transport::MessagesConfig {
            track_for: Millis::new(1),
            max_tracked: 1,
            ..chat::transport_config().messages
        },
        ..chat::transport_config()
    };
    let (server, transport) = chat::gateway(config).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    let js = jetstream::new(testing::connect(&server).await);
    let id = alice.post("lobby", NICE, "c1").await;
    bob.expect(WAIT, is("message", Some(&id))).await;
    // A later message pushes the first out of the tracker (one entry at most).
    let later = alice.post("lobby", "and another one", "c2").await;
    bob.expect(WAIT, is("message", Some(&later))).await;

    verdicts::publish(
        &js,
        &human(&id, "lobby", ReviewDecision::Remove, NICE, now_ms()),
    )
    .await;
    for page in [&mut alice, &mut bob] {
        let retract = page.expect(WAIT, is("retract", Some(&id))).await.frame;
        assert_eq!(retract["reason"], "removed", "{retract}");
    }
    assert_eq!(human_count(&transport, "remove").await, 1.0);
    transport.stop().await;
}
