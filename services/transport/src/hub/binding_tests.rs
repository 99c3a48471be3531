//! Verdicts bound to their request (issue 13, attack 2): unguessable ids, the text digest
//! checked before a verdict is applied, verdict frames to the sending connection only.

use crate::config::ModerationConfig;
use offpath_ops::cli::Millis;
use std::collections::HashSet;
use std::time::Duration;

use offpath_protocol::Action;

use super::tests::{frames, member, started, verdict_for_text};
use super::*;
use crate::peer::PeerReceiver;

fn hub(rules: &[&str]) -> (Arc<Hub>, mpsc::Receiver<ModerationRequest>) {
    let config = Config {
        tenant: "acme".into(),
        instance: "gw1".into(),
        moderation: ModerationConfig {
            hold_deadline: Millis::new(1_000),
            room_policy: rules.iter().map(|r| r.parse().unwrap()).collect(),
            ..Config::default().moderation
        },
        ..Config::default()
    };
    let (tx, rx) = mpsc::channel(64);
    (started(config, tx), rx)
}

/// Frame types (verdicts with their action) queued for a peer since the last call.
fn kinds(rx: &mut PeerReceiver) -> Vec<String> {
    frames(rx).into_iter().map(|(kind, _)| kind).collect()
}

/// Ids are `<instance>.<32 hex digits>` of OS randomness: all distinct, and none is the
/// previous one plus one (on the old `<instance>.<boot_ms>.<seq>` every next id was).
#[test]
fn ids_are_random_128_bit_not_a_sequence() {
    let ids: Vec<String> = (0..1_000).map(|_| new_id("gw1")).collect();
    let mut seen = HashSet::new();
    let mut previous: Option<u128> = None;
    for id in &ids {
        assert!(offpath_protocol::subject::is_valid_id(id), "{id}");
        let random = id.strip_prefix("gw1.").expect("instance prefix");
        assert_eq!(random.len(), 32, "128 bits in hex: {id}");
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let value = u128::from_str_radix(random, 16).expect("hex");
        assert!(seen.insert(value), "repeated id {id}");
        if let Some(previous) = previous {
            assert_ne!(value, previous.wrapping_add(1), "sequential: {id}");
        }
        previous = Some(value);
    }
    // Each of the 128 bits varies across the sample (a counter would leave the high ones).
    let (ones, zeros) = seen
        .iter()
        .fold((0u128, 0u128), |(o, z), v| (o | v, z | !v));
    assert_eq!(
        (ones, zeros),
        (u128::MAX, u128::MAX),
        "every bit takes both values"
    );
}

/// The hub's ids are `new_id`'s: a request's id carries no counter.
#[tokio::test]
async fn requests_get_random_ids() {
    let (hub, mut outbox) = hub(&[]);
    let (alice, _rx) = member(&hub, "alice", "lobby");
    hub.accept(&alice, "lobby", "a".into(), None, Instant::now());
    hub.accept(&alice, "lobby", "b".into(), None, Instant::now());
    let (first, second) = (outbox.try_recv().unwrap(), outbox.try_recv().unwrap());
    for request in [&first, &second] {
        assert_eq!(request.id.len(), "gw1.".len() + 32, "{}", request.id);
    }
    assert_ne!(first.id, second.id);
}

/// A verdict for another text under the message's id (a forged request's), or with no
/// digest, is refused: no retract, no verdict frame, and the real verdict still applies.
#[tokio::test]
async fn a_verdict_for_another_text_is_refused_in_a_post_room() {
    let (hub, mut outbox) = hub(&[]);
    let (alice, mut alice_rx) = member(&hub, "alice", "lobby");
    let (_bob, mut bob_rx) = member(&hub, "bob", "lobby");
    hub.accept(&alice, "lobby", "you idiot".into(), None, Instant::now());
    let request = outbox.try_recv().unwrap();
    assert_eq!(kinds(&mut alice_rx), ["ack", "message"]);
    assert_eq!(kinds(&mut bob_rx), ["message"]);
    hub.apply_verdict(verdict_for_text(&request, Action::Allow, Some("hello")));
    hub.apply_verdict(verdict_for_text(&request, Action::Block, Some("hello")));
    hub.apply_verdict(verdict_for_text(&request, Action::Allow, None));
    assert!(
        kinds(&mut alice_rx).is_empty(),
        "no verdict frame for a forgery"
    );
    assert!(
        kinds(&mut bob_rx).is_empty(),
        "nothing retracted by a forgery"
    );
    hub.apply_verdict(verdict_for_text(&request, Action::Block, Some("you idiot")));
    assert_eq!(kinds(&mut alice_rx), ["verdict:block", "retract"]);
    assert_eq!(kinds(&mut bob_rx), ["retract"]);
}

/// In a fail-closed hold room a forged `allow` releases nothing; at the deadline the room's
/// failure policy drops the message as for any missing verdict.
#[tokio::test(start_paused = true)]
async fn a_forged_allow_releases_nothing_from_a_hold() {
    let (hub, mut outbox) = hub(&["vault=hold:fail_closed"]);
    let (alice, mut alice_rx) = member(&hub, "alice", "vault");
    let (_bob, mut bob_rx) = member(&hub, "bob", "vault");
    hub.accept(&alice, "vault", "an insult".into(), None, Instant::now());
    let request = outbox.try_recv().unwrap();
    hub.apply_verdict(verdict_for_text(
        &request,
        Action::Allow,
        Some("a nice text"),
    ));
    assert_eq!(kinds(&mut alice_rx), ["ack"]);
    assert!(kinds(&mut bob_rx).is_empty(), "not released");
    assert_eq!(hub.held(), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(kinds(&mut alice_rx), ["verdict:unmoderated"]);
    assert!(kinds(&mut bob_rx).is_empty(), "dropped at the deadline");
    assert_eq!(hub.held(), 0);
}

/// The verdict frame goes to the connection that sent the message: not to a second page of
/// the same user, and to nobody once the sender is gone (the room still gets the retract).
#[tokio::test]
async fn verdict_frames_go_to_the_sending_connection_only() {
    let (hub, mut outbox) = hub(&["kids=hold:fail_open"]);
    let (alice, mut alice_rx) = member(&hub, "alice", "lobby");
    let (other_tab, mut other_rx) = member(&hub, "alice", "lobby");
    hub.join(&alice, "kids");
    hub.join(&other_tab, "kids");
    hub.accept(&alice, "lobby", "first".into(), None, Instant::now());
    let first = outbox.try_recv().unwrap();
    hub.apply_verdict(verdict_for_text(&first, Action::Allow, Some("first")));
    assert_eq!(kinds(&mut alice_rx), ["ack", "message", "verdict:allow"]);
    assert_eq!(kinds(&mut other_rx), ["message"]);

    hub.accept(&alice, "lobby", "second".into(), None, Instant::now());
    hub.accept(&alice, "kids", "held".into(), None, Instant::now());
    let (second, held) = (outbox.try_recv().unwrap(), outbox.try_recv().unwrap());
    hub.unregister(&alice, ["lobby".to_string(), "kids".to_string()]);
    drop((alice, alice_rx));
    let (late, mut late_rx) = member(&hub, "alice", "lobby");
    hub.join(&late, "kids");
    kinds(&mut other_rx);
    hub.apply_verdict(verdict_for_text(&second, Action::Block, Some("second")));
    hub.apply_verdict(verdict_for_text(&held, Action::Allow, Some("held")));
    assert_eq!(
        kinds(&mut late_rx),
        ["retract", "message"],
        "room frames only"
    );
    assert_eq!(
        kinds(&mut other_rx),
        ["retract", "message"],
        "room frames only"
    );
}
