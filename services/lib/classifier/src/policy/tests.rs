//! Combining labels into one decision, and naming the label that decided.

use super::*;

fn label(name: &str, flag: f32, block: f32) -> Label {
    Label {
        name: name.into(),
        column: 0,
        flag,
        block,
        signal: false,
        flag_only: false,
    }
}

/// The most severe label wins; thresholds are inclusive; NaN counts as 0.
#[test]
fn most_severe_label_wins() {
    let insult = label("insult", 0.2, 0.4);
    let profanity = label("profanity", 0.5, 0.8);
    let a = Assessment::combine([(&insult, 0.1), (&profanity, 0.5)]);
    assert_eq!(a.decision, Decision::Flag);
    let a = Assessment::combine([(&insult, 0.4), (&profanity, 0.0)]);
    assert_eq!(a.decision, Decision::Block);
    let a = Assessment::combine([(&insult, f32::NAN), (&profanity, 0.1)]);
    assert_eq!(a.decision, Decision::Allow);
    assert_eq!(a.scores["insult"], 0.0);
    // A signal is scored and decides nothing.
    let signal = Label {
        signal: true,
        ..label("profanity", 0.5, 0.8)
    };
    let a = Assessment::combine([(&insult, 0.1), (&signal, 1.0)]);
    assert_eq!(a.decision, Decision::Allow);
    assert_eq!(a.decided_by, None);
    assert_eq!(a.scores["profanity"], 1.0);
}

/// The label that decided is the most severe one, by score among equals; a flag-only
/// label flags at its block threshold too, and a blocking label outranks it.
#[test]
fn the_deciding_label_is_named() {
    let harassment = label("harassment", 0.5, 0.9);
    let threat = Label {
        flag_only: true,
        ..label("threat", 0.2, 0.4)
    };
    let a = Assessment::combine([(&harassment, 0.6), (&threat, 0.95)]);
    assert_eq!(a.decision, Decision::Flag, "a flag-only label never blocks");
    assert_eq!(
        a.decided_by.as_deref(),
        Some("threat"),
        "higher score among flags"
    );
    let a = Assessment::combine([(&harassment, 0.9), (&threat, 0.99)]);
    assert_eq!(a.decision, Decision::Block);
    assert_eq!(
        a.decided_by.as_deref(),
        Some("harassment"),
        "the block decides"
    );
    let a = Assessment::combine([(&harassment, 0.1), (&threat, 0.1)]);
    assert_eq!((a.decision, a.decided_by), (Decision::Allow, None));
}
