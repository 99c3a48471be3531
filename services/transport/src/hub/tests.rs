//! The life of a message in the hub, with real peers and a real outbox channel.

use crate::config::{MessagesConfig, ModerationConfig};
use std::collections::BTreeMap;
use std::time::Duration;

use offpath_protocol::{Action, Priority, Verdict};

use super::*;
use crate::peer::PeerReceiver;

fn hub(capacity: usize, rules: &[&str]) -> (Arc<Hub>, mpsc::Receiver<ModerationRequest>) {
    let config = Config {
        tenant: "acme".into(),
        moderation: ModerationConfig {
            room_policy: rules.iter().map(|r| r.parse().unwrap()).collect(),
            ..Config::default().moderation
        },
        ..Config::default()
    };
    let (tx, rx) = mpsc::channel(capacity);
    (started(config, tx), rx)
}

/// A decoupled hub with its hold deadline task running.
pub(super) fn started(config: Config, outbox: mpsc::Sender<ModerationRequest>) -> Arc<Hub> {
    let hub = Hub::new(config, outbox, Admission::Decoupled);
    tokio::spawn(Arc::clone(&hub).hold_deadlines());
    hub
}

pub(super) fn member(hub: &Hub, user: &str, room: &str) -> (Arc<Peer>, PeerReceiver) {
    let (peer, rx) = hub.register(user.into()).expect("registered");
    hub.join(&peer, room);
    (peer, rx)
}

/// Frame types (and ids) queued for a peer since the last call.
pub(super) fn frames(rx: &mut PeerReceiver) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Ok(frame) = rx.frames.try_recv() {
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        let id = value["id"].as_str().unwrap_or_default().to_string();
        let kind = match value["type"].as_str().unwrap() {
            "verdict" => format!("verdict:{}", value["action"].as_str().unwrap()),
            other => other.to_string(),
        };
        out.push((kind, id));
    }
    out
}

fn verdict(request: &ModerationRequest, action: Action) -> Verdict {
    verdict_for_text(request, action, Some(&request.text))
}

/// A verdict for `request` with `action`, claiming to have judged `text` (none: no digest).
pub(super) fn verdict_for_text(
    request: &ModerationRequest,
    action: Action,
    text: Option<&str>,
) -> Verdict {
    Verdict {
        v: PROTOCOL_VERSION,
        id: request.id.clone(),
        tenant: request.tenant.clone(),
        room: request.room.clone(),
        sender: request.sender.clone(),
        action,
        scores: BTreeMap::new(),
        model: offpath_protocol::ModelRef {
            name: "m".into(),
            version: "1".into(),
        },
        queued_ms: 0,
        inference_ms: 0,
        reason: None,
        text_sha256: text.map(offpath_protocol::text_sha256),
        policy: None,
        review: None,
        category: None,
        span: None,
        rule: None,
        campaign: None,
        counts: None,
    }
}

fn kinds(frames: &[(String, String)]) -> Vec<&str> {
    frames.iter().map(|(kind, _)| kind.as_str()).collect()
}

/// Post-moderated: delivered at once to every member; a block retracts it once, however
/// often the verdict comes.
#[tokio::test]
async fn post_room_delivers_then_retracts_once() {
    let (hub, mut outbox) = hub(8, &[]);
    let (alice, mut alice_rx) = member(&hub, "alice", "lobby");
    let (_bob, mut bob_rx) = member(&hub, "bob", "lobby");
    hub.accept(&alice, "lobby", "hi".into(), None, Instant::now());
    let request = outbox.try_recv().expect("request in the outbox");
    assert_eq!(kinds(&frames(&mut alice_rx)), ["ack", "message"]);
    assert_eq!(kinds(&frames(&mut bob_rx)), ["message"]);
    for _ in 0..2 {
        hub.apply_verdict(verdict(&request, Action::Block));
    }
    assert_eq!(kinds(&frames(&mut alice_rx)), ["verdict:block", "retract"]);
    assert_eq!(kinds(&frames(&mut bob_rx)), ["retract"]);
}

/// A room's requests name the moderation policy of its first matching rule; other rooms
/// name none.
#[tokio::test]
async fn requests_name_the_rooms_moderation_policy() {
    let config = Config {
        tenant: "acme".into(),
        moderation: ModerationConfig {
            moderation_policy: ["kids*=strict", "kids-teens=lenient", "lobby=standard"]
                .iter()
                .map(|r| r.parse().unwrap())
                .collect(),
            ..Config::default().moderation
        },
        ..Config::default()
    };
    let (tx, mut outbox) = mpsc::channel(8);
    let hub = started(config, tx);
    for (room, expected) in [
        ("kids-teens", Some("strict")),
        ("kids", Some("strict")),
        ("lobby", Some("standard")),
        ("lobby2", None),
    ] {
        let (alice, _rx) = member(&hub, "alice", room);
        hub.accept(&alice, room, "hello".into(), None, Instant::now());
        let request = outbox.try_recv().unwrap();
        assert_eq!(request.policy.as_deref(), expected, "{room}");
    }
    for bad in ["kids", "=strict", "kids=no.dots"] {
        assert!(
            bad.parse::<crate::config::ModerationRule>().is_err(),
            "{bad}"
        );
    }
}

/// A hold room shows nothing until `allow`; a block while held shows nothing ever.
#[tokio::test]
async fn hold_room_waits_for_allow() {
    let (hub, mut outbox) = hub(8, &["kids=hold:fail_open"]);
    let (alice, mut alice_rx) = member(&hub, "alice", "kids");
    let (_bob, mut bob_rx) = member(&hub, "bob", "kids");
    hub.accept(&alice, "kids", "hello".into(), None, Instant::now());
    hub.accept(&alice, "kids", "rude".into(), None, Instant::now());
    let (first, second) = (outbox.try_recv().unwrap(), outbox.try_recv().unwrap());
    assert_eq!(first.priority, Some(Priority::High));
    assert_eq!(
        first.policy, None,
        "no --moderation-policy rule: the moderators choose"
    );
    assert!(frames(&mut bob_rx).is_empty(), "nothing shown while held");
    assert_eq!(hub.held(), 2);
    hub.apply_verdict(verdict(&first, Action::Allow));
    hub.apply_verdict(verdict(&second, Action::Block));
    assert_eq!(
        frames(&mut bob_rx),
        [("message".to_string(), first.id.clone())]
    );
    assert_eq!(
        kinds(&frames(&mut alice_rx)),
        ["ack", "ack", "verdict:allow", "message", "verdict:block"]
    );
    assert_eq!(hub.held(), 0);
}

/// At the hold deadline a fail-open room delivers (a later block still retracts) and a
/// fail-closed room drops.
#[tokio::test(start_paused = true)]
async fn hold_deadline_follows_the_failure_policy() {
    let (hub, mut outbox) = hub(8, &["open=hold:fail_open", "closed=hold:fail_closed"]);
    let (alice, mut alice_rx) = member(&hub, "alice", "open");
    hub.join(&alice, "closed");
    let (bob, mut bob_rx) = member(&hub, "bob", "open");
    hub.join(&bob, "closed");
    hub.accept(&alice, "open", "a".into(), None, Instant::now());
    hub.accept(&alice, "closed", "b".into(), None, Instant::now());
    let (open, _closed) = (outbox.try_recv().unwrap(), outbox.try_recv().unwrap());
    tokio::time::sleep(hub.config().moderation.hold_deadline.get() + Duration::from_millis(10))
        .await;
    assert_eq!(
        frames(&mut bob_rx),
        [("message".to_string(), open.id.clone())]
    );
    assert_eq!(
        kinds(&frames(&mut alice_rx)),
        [
            "ack",
            "ack",
            "verdict:unmoderated",
            "message",
            "verdict:unmoderated"
        ]
    );
    hub.apply_verdict(verdict(&open, Action::Block));
    assert_eq!(
        frames(&mut bob_rx),
        [("retract".to_string(), open.id.clone())]
    );
}

/// A full outbox sheds: fail-open keeps the message, fail-closed retracts it; the sender is
/// told `unmoderated` either way.
#[tokio::test]
async fn a_full_outbox_sheds_by_room_policy() {
    let (hub, _outbox) = hub(1, &["strict=post:fail_closed"]);
    let (alice, mut alice_rx) = member(&hub, "alice", "strict");
    hub.join(&alice, "lobby");
    hub.accept(
        &alice,
        "lobby",
        "fills the outbox".into(),
        None,
        Instant::now(),
    );
    hub.accept(&alice, "lobby", "shed, stays".into(), None, Instant::now());
    hub.accept(
        &alice,
        "strict",
        "shed, retracted".into(),
        None,
        Instant::now(),
    );
    assert_eq!(
        kinds(&frames(&mut alice_rx)),
        [
            "ack",
            "message",
            "ack",
            "message",
            "verdict:unmoderated",
            "ack",
            "message",
            "verdict:unmoderated",
            "retract"
        ]
    );
    assert_eq!(hub.outbox_depth(), 1);
}

/// Only a fail-closed hold room's request carries a deadline: every other message stays
/// (or becomes) visible, so the moderator must classify it however late it comes back.
#[tokio::test]
async fn only_dropped_messages_carry_a_deadline() {
    let rules = [
        "open=hold:fail_open",
        "closed=hold:fail_closed",
        "strict=post:fail_closed",
    ];
    let (hub, mut outbox) = hub(8, &rules);
    let (alice, _rx) = member(&hub, "alice", "lobby");
    for room in ["lobby", "open", "closed", "strict"] {
        hub.join(&alice, room);
        hub.accept(&alice, room, "hi".into(), None, Instant::now());
        let request = outbox.try_recv().expect("request");
        let deadline = request.deadline_ms;
        if room == "closed" {
            assert_eq!(
                deadline,
                Some(request.sent_at_ms + hub.config().moderation.hold_deadline.ms())
            );
        } else {
            assert_eq!(deadline, None, "{room}: a visible message has no deadline");
        }
    }
}

/// Verdicts for ids the gateway never saw (forged, or another gateway's) do not enter the
/// tracker, so they cannot push out a held message: it is still delivered at its deadline
/// in a fail-open room, and the held gauge comes back to 0.
#[tokio::test(start_paused = true)]
async fn unknown_verdicts_cannot_evict_a_held_message() {
    let config = Config {
        tenant: "acme".into(),
        moderation: ModerationConfig {
            room_policy: vec!["kids=hold:fail_open".parse().unwrap()],
            ..Config::default().moderation
        },
        messages: MessagesConfig {
            max_tracked: 4,
            ..Config::default().messages
        },
        ..Config::default()
    };
    let (tx, mut outbox) = mpsc::channel(8);
    let hub = started(config, tx);
    let (alice, _alice_rx) = member(&hub, "alice", "kids");
    let (_bob, mut bob_rx) = member(&hub, "bob", "kids");
    hub.accept(&alice, "kids", "held".into(), None, Instant::now());
    let held = outbox.try_recv().expect("request");
    for n in 0..50 {
        let mut forged = verdict(&held, Action::Allow);
        // Ids in this gateway's own shape: the ones it cannot dismiss as another's.
        forged.id = format!("{}.forged.{n}", hub.config().instance);
        hub.apply_verdict(forged);
    }
    assert_eq!(hub.held(), 1, "still held");
    tokio::time::sleep(hub.config().moderation.hold_deadline.get() + Duration::from_millis(10))
        .await;
    assert_eq!(
        frames(&mut bob_rx),
        [("message".to_string(), held.id.clone())]
    );
    assert_eq!(hub.held(), 0);
}

/// A verdict for an id another gateway assigned (or a forged one) reaches nobody: rooms live
/// in one gateway, so it cannot be on this gateway's screens. One for an id this gateway
/// assigned and forgot is still applied, once.
#[tokio::test]
async fn unknown_ids_of_other_gateways_are_ignored() {
    let (hub, mut outbox) = hub(8, &[]);
    let (alice, mut alice_rx) = member(&hub, "alice", "lobby");
    let (_bob, mut bob_rx) = member(&hub, "bob", "lobby");
    hub.accept(&alice, "lobby", "hi".into(), None, Instant::now());
    let request = outbox.try_recv().expect("request");
    frames(&mut alice_rx);
    frames(&mut bob_rx);
    let mut foreign = verdict(&request, Action::Block);
    foreign.id = "other-gateway.1.1".into();
    hub.apply_verdict(foreign);
    assert!(frames(&mut bob_rx).is_empty(), "nothing for another's id");
    assert!(frames(&mut alice_rx).is_empty());
    let mut forgotten = verdict(&request, Action::Block);
    forgotten.id = format!("{}.0.ffff", hub.config().instance);
    for _ in 0..2 {
        hub.apply_verdict(forgotten.clone());
    }
    assert_eq!(frames(&mut bob_rx), [("retract".to_string(), forgotten.id)]);
}

/// A `joined` frame carries the room's policy and text limit, and its history: the latest
/// messages still shown, oldest first, at most [`crate::frames::HISTORY_MESSAGES`]; a
/// retracted message and a held one not yet released are not in it.
#[tokio::test]
async fn joined_carries_policy_limit_and_history() {
    let (hub, mut outbox) = hub(128, &["kids=hold:fail_closed"]);
    let (alice, _alice_rx) = member(&hub, "alice", "lobby");
    let max = crate::frames::HISTORY_MESSAGES;
    for n in 0..max + 2 {
        hub.accept(&alice, "lobby", format!("hi {n}"), None, Instant::now());
    }
    let last = (0..max + 2)
        .filter_map(|_| outbox.try_recv().ok())
        .last()
        .expect("requests");
    hub.apply_verdict(verdict(&last, Action::Block));
    let ServerFrame::Joined {
        policy,
        failure,
        max_text_bytes,
        history,
        ..
    } = hub.joined("lobby".into(), true)
    else {
        panic!("not a joined frame")
    };
    assert_eq!((policy.as_str(), failure.as_str()), ("post", "fail_open"));
    assert_eq!(max_text_bytes, hub.config().messages.max_text_bytes);
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    // 52 sent, the last retracted: the 50 latest of the other 51.
    assert_eq!(texts.len(), max, "at most {max}");
    assert_eq!(texts.first(), Some(&"hi 1"), "the latest, oldest first");
    assert_eq!(texts.last(), Some(&format!("hi {max}").as_str()));
    let retracted = format!("hi {}", max + 1);
    assert!(
        !texts.contains(&retracted.as_str()),
        "not the retracted one"
    );
    assert!(history.iter().all(|m| m.sender == "alice"));
    let ServerFrame::Joined { history, .. } = hub.joined("lobby".into(), false) else {
        panic!("not a joined frame")
    };
    assert!(
        history.is_empty(),
        "past its history joins a connection gets none"
    );
    let (kid, _kid_rx) = member(&hub, "kid", "kids");
    hub.accept(&kid, "kids", "held".into(), None, Instant::now());
    let ServerFrame::Joined {
        policy,
        failure,
        history,
        ..
    } = hub.joined("kids".into(), true)
    else {
        panic!("not a joined frame")
    };
    assert_eq!((policy.as_str(), failure.as_str()), ("hold", "fail_closed"));
    assert!(history.is_empty(), "a held message is not history yet");
}
