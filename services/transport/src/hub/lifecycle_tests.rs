//! The message state machine as a table: (state, room failure policy, event) → (new state,
//! settled, effects).

use super::*;

const LAG: Duration = Duration::from_millis(5);

fn held() -> State {
    State::Held { text: "t".into() }
}

fn tracked(state: State, failure: Failure, settled: bool, start: Instant) -> Tracked {
    Tracked {
        room: "r".into(),
        sender: "u".into(),
        sender_peer: Weak::new(),
        sent_at_ms: 1,
        accepted: start,
        policy: RoomPolicy {
            hold: matches!(state, State::Held { .. }),
            e2e: false,
            failure,
        },
        state,
        settled,
        reviewed_at_ms: 0,
        text_sha256: "".into(),
    }
}

fn verdict(action: Action) -> Event<'static> {
    Event::Verdict {
        action,
        reason: None,
    }
}

const SHED: Event<'static> = Event::Shed {
    reason: "outbox_full",
};

/// The sender is told; nothing else.
fn told() -> Effects {
    Effects {
        notify_sender: true,
        ..Effects::default()
    }
}

/// A real verdict: told, counted, its lag measured.
fn counted() -> Effects {
    Effects {
        count_verdict: true,
        lag: Some(LAG),
        ..told()
    }
}

fn released(outcome: &'static str, base: Effects) -> Effects {
    Effects {
        deliver: Some("t".into()),
        hold_outcome: Some(outcome),
        ..base
    }
}

fn dropped(outcome: &'static str, base: Effects) -> Effects {
    Effects {
        hold_outcome: Some(outcome),
        ..base
    }
}

fn retracted(reason: &'static str, base: Effects) -> Effects {
    Effects {
        retract: Some(reason),
        ..base
    }
}

/// Every (state, failure policy, event) pair the gateway meets gives the documented state
/// and effects.
#[test]
fn transitions() {
    use Failure::{Closed, Open};
    use State::{Delivered, Withdrawn};
    let duplicate = Effects {
        ignored: Some("duplicate"),
        ..Effects::default()
    };
    #[rustfmt::skip]
    let table: Vec<(State, Failure, bool, Event<'_>, State, bool, Effects)> = vec![
        // Post rooms: delivered at once; a block (or no verdict in a fail-closed room)
        // retracts.
        (Delivered, Open, false, verdict(Action::Allow), Delivered, true, counted()),
        (Delivered, Open, false, verdict(Action::Flag), Delivered, true, counted()),
        (Delivered, Open, false, verdict(Action::Block), Withdrawn, true,
            retracted("blocked", counted())),
        (Delivered, Closed, false, verdict(Action::Unmoderated), Withdrawn, true,
            retracted("unmoderated", counted())),
        (Delivered, Open, false, SHED, Delivered, true, told()),
        (Delivered, Closed, false, SHED, Withdrawn, true, retracted("unmoderated", told())),
        // Hold rooms: released by allow/flag, dropped by block, the failure policy decides
        // the rest.
        (held(), Open, false, verdict(Action::Allow), Delivered, true,
            released("allowed", counted())),
        (held(), Closed, false, verdict(Action::Flag), Delivered, true,
            released("flagged", counted())),
        (held(), Open, false, verdict(Action::Block), Withdrawn, true,
            dropped("blocked", counted())),
        (held(), Open, false, verdict(Action::Unmoderated), Delivered, true,
            released("unmoderated_delivered", counted())),
        (held(), Closed, false, verdict(Action::Unmoderated), Withdrawn, true,
            dropped("unmoderated_dropped", counted())),
        (held(), Open, false, SHED, Delivered, true, released("unmoderated_delivered", told())),
        (held(), Closed, false, SHED, Withdrawn, true, dropped("unmoderated_dropped", told())),
        // The hold deadline is not final: the verdict that comes later still applies.
        (held(), Open, false, Event::HoldDeadline, Delivered, false,
            released("deadline_delivered", told())),
        (held(), Closed, false, Event::HoldDeadline, Withdrawn, false,
            dropped("deadline_dropped", told())),
        (Delivered, Open, false, verdict(Action::Block), Withdrawn, true,
            retracted("blocked", counted())),
        (Withdrawn, Closed, false, verdict(Action::Allow), Withdrawn, true, counted()),
        (Withdrawn, Closed, false, verdict(Action::Block), Withdrawn, true, counted()),
        // A deadline for a message no longer held does nothing.
        (Delivered, Open, false, Event::HoldDeadline, Delivered, false, Effects::default()),
        (Withdrawn, Closed, true, Event::HoldDeadline, Withdrawn, true, Effects::default()),
        // Once settled, every later event is a duplicate.
        (Delivered, Open, true, verdict(Action::Block), Delivered, true, duplicate.clone()),
        (Withdrawn, Open, true, verdict(Action::Allow), Withdrawn, true, duplicate.clone()),
        (Delivered, Closed, true, SHED, Delivered, true, duplicate),
    ];
    let start = Instant::now();
    for (row, (state, failure, settled, event, new_state, now_settled, effects)) in
        table.into_iter().enumerate()
    {
        let mut message = tracked(state.clone(), failure, settled, start);
        let got = settle(&mut message, &event, start + LAG);
        let case = format!("row {row}: {state:?} {failure:?} settled={settled} {event:?}");
        assert_eq!(got, effects, "{case}: effects");
        assert_eq!(message.state, new_state, "{case}: state");
        assert_eq!(message.settled, now_settled, "{case}: settled");
    }
}

/// A message accepted before this process knew its start time (`sent_at_ms` 0) has no lag.
#[test]
fn no_lag_without_an_acceptance_time() {
    let start = Instant::now();
    let mut message = Tracked {
        sent_at_ms: 0,
        ..tracked(State::Delivered, Failure::Open, false, start)
    };
    let effects = settle(&mut message, &verdict(Action::Allow), start + LAG);
    assert_eq!(effects.lag, None);
    assert!(effects.count_verdict);
}

/// A verdict for an untracked message: the sender is told, it is counted, and a block (or
/// no verdict in a fail-closed room) retracts it from the room.
#[test]
fn unknown_messages() {
    let cases = [
        (Action::Allow, Failure::Closed, None),
        (Action::Block, Failure::Open, Some("blocked")),
        (Action::Unmoderated, Failure::Open, None),
        (Action::Unmoderated, Failure::Closed, Some("unmoderated")),
    ];
    for (action, failure, retract) in cases {
        let effects = settle_unknown(action, failure);
        assert_eq!(
            effects,
            Effects {
                notify_sender: true,
                retract,
                count_verdict: true,
                ..Effects::default()
            },
            "{action:?} {failure:?}"
        );
    }
}

/// The sender is told the event's action and reason.
#[test]
fn what_the_sender_is_told() {
    assert_eq!(SHED.action(), Action::Unmoderated);
    assert_eq!(SHED.reason(), Some("outbox_full"));
    assert_eq!(Event::HoldDeadline.reason(), Some("hold_deadline"));
    let event = Event::Verdict {
        action: Action::Flag,
        reason: Some("r"),
    };
    assert_eq!((event.action(), event.reason()), (Action::Flag, Some("r")));
}
