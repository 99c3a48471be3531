//! Verdicts say why: where in a text the deciding label scored highest. A long text's
//! worst window is its span; a short flagged text is read again in short windows; a text
//! whose harm is the whole of it, or that only its normalised view shows, has no span.

mod common;

use offpath_classifier::{Decision, Views, policy::Policy};

fn policy() -> Policy {
    Policy::new(
        vec![common::model("minilm-insult"), common::model("profanity")],
        16,
        512,
    )
}

/// Harmless, varied chat: `n` words of it.
fn chatter(n: usize) -> String {
    const LINES: &str = "the meeting moved to thursday afternoon because the room was booked \
        i think the new bus timetable is better than the old one \
        did anyone watch the match last night the second half was great \
        we still need two more volunteers for the garden cleanup on sunday";
    let words: Vec<&str> = LINES.split_whitespace().collect();
    (0..n)
        .map(|i| words[i % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The byte range of `part` in `text`.
fn range(text: &str, part: &str) -> (usize, usize) {
    let start = text.find(part).expect("part of the text");
    (start, start + part.len())
}

/// `(start, end)` of the deciding label's span, asserting it is a proper part of `text`
/// on character boundaries.
fn deciding_span(text: &str, a: &offpath_classifier::Assessment) -> (usize, usize) {
    let label = a.decided_by.as_deref().expect("decided");
    let span = a
        .spans
        .get(label)
        .unwrap_or_else(|| panic!("no span for {label}: {a:?}"));
    assert!(span.start < span.end && span.end <= text.len(), "{span:?}");
    assert!(
        span.end - span.start < text.len(),
        "a span is a part, not the whole"
    );
    assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
    (span.start, span.end)
}

fn overlaps((a, b): (usize, usize), (c, d): (usize, usize)) -> bool {
    a < d && c < b
}

/// In a short message and in a long one, the deciding label's span covers the hostile
/// part and leaves out most of the chatter around it.
#[test]
fn the_span_covers_the_hostile_part() {
    let hostile = "you are a worthless pathetic idiot and everyone here hates you";
    let short = format!(
        "the meeting moved to thursday afternoon because the room was booked, and {hostile}"
    );
    let long = format!("{} {hostile}. {}", chatter(300), chatter(300));
    let texts = [short.as_str(), long.as_str()];
    let assessed = policy()
        .with_views(Views::Raw)
        .assess(&texts, None)
        .expect("assess");
    for (text, a) in texts.iter().zip(&assessed) {
        assert_ne!(a.decision, Decision::Allow, "{:?}", a.scores);
        let span = deciding_span(text, a);
        eprintln!("{:?} → {:?}", a.decided_by, &text[span.0..span.1]);
        assert!(
            overlaps(span, range(text, hostile)),
            "span {span:?} misses the insult"
        );
        assert!(
            !overlaps(span, range(text, "the meeting moved to thursday")),
            "span {span:?} reaches into the chatter before"
        );
    }
}

/// Short texts that decide as a whole have no span, and texts that allow have none to
/// give for an acting label; a text only the normalised view reads has none either (its
/// offsets would not be the sent text's).
#[test]
fn no_span_when_the_whole_text_decides() {
    let texts = [
        "you idiot",
        "see you at 5?",
        "y o u   a r e   a n   i d i o t",
    ];
    let assessed = policy().assess(&texts, None).expect("assess");
    assert_ne!(assessed[0].decision, Decision::Allow, "{:?}", assessed[0]);
    assert!(assessed[0].spans.is_empty(), "{:?}", assessed[0].spans);
    assert_eq!(assessed[1].decision, Decision::Allow, "{:?}", assessed[1]);
    assert!(assessed[1].spans.is_empty(), "{:?}", assessed[1].spans);
    assert_ne!(assessed[2].decision, Decision::Allow, "{:?}", assessed[2]);
    assert!(assessed[2].spans.is_empty(), "{:?}", assessed[2].spans);
}

/// Locating is batch invariant like the scores: a text's spans are the same alone and
/// among others, and its scores are the same with and without a span to find.
#[test]
fn spans_do_not_depend_on_the_batch() {
    let flagged = "honestly the match was fine but you are a pathetic clueless loser, shut up";
    let others = [
        "see you at 5?",
        "the recipe needs less sugar than it says and a bit more lemon",
        "you idiot",
    ];
    let mut p = policy();
    let alone = p.assess(&[flagged], None).expect("assess").remove(0);
    let mut batch = vec![flagged];
    batch.extend(others);
    let among = p.assess(&batch, None).expect("assess").remove(0);
    assert!(!alone.spans.is_empty(), "{alone:?}");
    assert_eq!(
        alone.spans.keys().collect::<Vec<_>>(),
        among.spans.keys().collect::<Vec<_>>()
    );
    for (label, span) in &alone.spans {
        let other = among.spans[label];
        assert_eq!((span.start, span.end), (other.start, other.end), "{label}");
        assert!((span.score - other.score).abs() <= 1e-4, "{label}");
    }
    for (label, score) in &alone.scores {
        assert!((score - among.scores[label]).abs() <= 1e-4, "{label}");
    }
}

/// A text the normaliser folds without disguise (a curly apostrophe, an accent) is scored
/// in its normalised view, and located in the text as sent.
#[test]
fn a_folded_text_is_located_in_the_text_as_sent() {
    let text = "the café was fine but honestly you\u{2019}re a pathetic clueless loser, shut up";
    let a = policy().assess(&[text], None).expect("assess").remove(0);
    assert_ne!(a.decision, Decision::Allow, "{:?}", a.scores);
    let span = deciding_span(text, &a);
    eprintln!("{:?}", &text[span.0..span.1]);
    assert!(
        overlaps(span, range(text, "pathetic clueless loser")),
        "{span:?}"
    );
}
