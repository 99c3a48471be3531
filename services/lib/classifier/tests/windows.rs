//! Long texts: the insult model reads 256 tokens at a time and averages over them, so a
//! longer text is read in short overlapping windows and its worst window counts; the
//! profanity model reads it whole.

mod common;

use offpath_classifier::{Decision, Prepared, Views, WINDOW_OVERLAP, policy::Policy};

fn padding(words: usize) -> String {
    "hello ".repeat(words)
}

fn policy() -> Policy {
    Policy::new(
        vec![common::model("minilm-insult"), common::model("profanity")],
        16,
        512,
    )
    .with_views(Views::Raw)
}

/// A text longer than the model reads becomes windows (64 tokens asked here) framed by [CLS] … [SEP],
/// consecutive ones sharing `WINDOW_OVERLAP` tokens, the last ending at the text's end; a
/// text that fits is read whole, as `prepare` gives it; the string model reads it whole.
#[test]
fn windows_cover_the_text_with_overlap() {
    let model = common::model("minilm-insult");
    let text = format!("you stupid idiot {}", padding(600));
    let windows = model.prepare_windows(&text, 64).expect("windows");
    let ids: Vec<&Vec<i64>> = windows
        .iter()
        .map(|w| match w {
            Prepared::Tokens { ids, .. } => ids,
            Prepared::Text(_) => panic!("token model gave text"),
        })
        .collect();
    // 603 content tokens, 62 per window, a new window every 62 - WINDOW_OVERLAP tokens, the last
    // one moved back to end at the text's end.
    assert_eq!(
        ids.len(),
        (603 - 62_usize).div_ceil(62 - WINDOW_OVERLAP) + 1
    );
    for w in &ids {
        assert_eq!(w.len(), 64);
        assert_eq!((w[0], w[63]), (101, 102), "[CLS] … [SEP]");
    }
    assert_eq!(ids[0][63 - WINDOW_OVERLAP..63], ids[1][1..=WINDOW_OVERLAP]);
    let all = model.prepare_windows(&text, 10_000).expect("windows");
    assert!(all.iter().all(|w| w.len() == 256), "clamped to max_tokens");
    let short = "you are a pathetic idiot";
    assert_eq!(
        model.prepare_windows(short, 64).expect("windows"),
        vec![model.prepare(short).expect("prepare")]
    );
    let profanity = common::model("profanity");
    assert_eq!(
        profanity.prepare_windows(&text, 64).expect("windows").len(),
        1
    );
}

/// Harmless, varied chat: `n` words of it.
fn chatter(n: usize) -> String {
    const LINES: &str = "the meeting moved to thursday afternoon because the room was booked \
        i think the new bus timetable is better than the old one \
        did anyone watch the match last night the second half was great \
        we still need two more volunteers for the garden cleanup on sunday \
        the recipe needs less sugar than it says and a bit more lemon";
    let words: Vec<&str> = LINES.split_whitespace().collect();
    (0..n)
        .map(|i| words[i % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A hostile passage after the first 256 tokens was not read at all, and one inside them
/// drowned in the mean over 256 tokens. Read in 32-token windows, it is flagged wherever it
/// stands in varied chatter; the chatter alone is not.
#[test]
fn a_hostile_passage_anywhere_in_a_long_text_is_caught() {
    let mut windowed = policy();
    let hostile = "you are a pathetic stupid idiot, a worthless moron and a disgrace. \
        shut up you idiot, nobody wants your garbage here, you clueless loser.";
    let texts = [
        format!("{hostile} {}", chatter(400)),
        format!("{} {hostile} {}", chatter(300), chatter(300)),
        format!("{} {hostile}", chatter(800)),
        chatter(800),
    ];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let truncated = common::model("minilm-insult").score(&refs).expect("score");
    let assessed = windowed.assess(&refs, None).expect("assess");
    for (i, (t, a)) in truncated.iter().zip(&assessed).enumerate() {
        eprintln!(
            "text {i}: first 256 tokens {:.3}, windows {:?}",
            t[0], a.scores
        );
    }
    for a in &assessed[..3] {
        assert_ne!(a.decision, Decision::Allow, "{:?}", a.scores);
    }
    assert_eq!(assessed[3].decision, Decision::Allow, "{:?}", assessed[3]);
    assert!(windowed.last_stats().extra_windows >= 4 * 5);
    assert_eq!(windowed.last_stats().capped, 0);
}

/// The issue's case, "you stupid idiot" then 300 × "hello ", scored 0.05 by v1 (the
/// MiniLM head alone) even in 256-token windows (the insult is 3 tokens of 256). The
/// ensemble's char half reads the window's text, where "stupid idiot" does not average
/// away, so v2 flags it in 256-token windows too; in 32-token windows, and in the
/// normalised view (a repeated word said once), it is flagged as before.
#[test]
fn the_issue_case_is_flagged() {
    let text = format!("you stupid idiot {}", padding(300));
    let wide = policy().with_window_tokens(256).assess(&[&text], None);
    let narrow = policy().assess(&[&text], None);
    let mut default = Policy::new(
        vec![common::model("minilm-insult"), common::model("profanity")],
        16,
        512,
    );
    let seen = default.assess(&[&text], None).expect("assess");
    let (wide, narrow) = (wide.expect("assess"), narrow.expect("assess"));
    eprintln!(
        "256-token windows {:?}; 32-token windows {:?}; default policy {:?}",
        wide[0].scores, narrow[0].scores, seen[0].scores
    );
    assert_ne!(wide[0].decision, Decision::Allow);
    assert_ne!(narrow[0].decision, Decision::Allow);
    assert_ne!(seen[0].decision, Decision::Allow);
    assert_eq!(default.last_stats().normalised, 1);
}

/// The window bound holds: with at most 2 windows per text, the first and the last are
/// read and the middle is not (counted as capped).
#[test]
fn the_window_bound_keeps_the_first_and_last() {
    let mut policy = policy().with_max_windows(2);
    let hostile = "you are a pathetic stupid idiot, a worthless moron and a disgrace.";
    let middle = format!("{} {hostile} {}", chatter(300), chatter(300));
    let last = format!("{} {hostile}", chatter(600));
    let assessed = policy.assess(&[&middle, &last], None).expect("assess");
    assert!(assessed[0].scores["insult"] < 0.3, "{:?}", assessed[0]);
    assert!(assessed[1].scores["insult"] >= 0.5, "{:?}", assessed[1]);
    assert_eq!(policy.last_stats().capped, 2);
    assert_eq!(policy.last_stats().extra_windows, 2);
}
