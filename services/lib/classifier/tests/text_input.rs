//! The ensemble's `text` input (issue 15, section 4): a token model whose manifest names a
//! `text` input is fed, row for row, the text its token ids were made from — the text
//! whole, up to the last token kept when truncated, each window's own span, and the
//! normalised view when the policy normalises — and the graph really reads it.

mod common;

use offpath_classifier::{Normalizer, Prepared, Views, policy::Policy};

fn parts(p: &Prepared) -> (&[i64], Option<&str>) {
    match p {
        Prepared::Tokens { ids, text, .. } => (ids, text.as_deref()),
        Prepared::Text(_) => panic!("token model gave text"),
    }
}

/// A text that fits keeps its text whole (NUL replaced); a truncated one keeps exactly the
/// part its 256 tokens were made from: that part alone tokenizes to the same ids, and one
/// more word does not. The string model is unchanged: it has no token text.
#[test]
fn prepare_keeps_the_span_the_tokens_read() {
    let model = common::model("minilm-insult");
    let short = model
        .prepare("you are a\0pathetic idiot  ")
        .expect("prepare");
    assert_eq!(parts(&short).1, Some("you are a pathetic idiot  "));

    let long = "the quick brown fox jumps over the lazy dog ".repeat(60);
    let prepared = model.prepare(&long).expect("prepare");
    let (ids, kept) = parts(&prepared);
    let kept = kept.expect("text");
    assert_eq!(ids.len(), 256);
    assert!(
        long.starts_with(kept) && kept.len() < long.len(),
        "{kept:?}"
    );
    let again = model.prepare(kept).expect("prepare");
    assert_eq!(parts(&again).0, ids, "the kept text gives the same tokens");
    assert!(parts(&again).1 == Some(kept), "and is not cut again");

    let profanity = common::model("profanity");
    assert_eq!(
        profanity.prepare("a\0b").expect("prepare"),
        Prepared::Text("a b".into())
    );
}

/// Every window of a long text carries the span of the text its tokens came from: that
/// span, prepared on its own, gives the window's ids (CLS, the same tokens, SEP).
#[test]
fn each_window_carries_its_own_text() {
    let model = common::model("minilm-insult");
    let text = format!(
        "you stupid idiot, {} and what a lovely day it was",
        "we met at the station and walked to the old harbour. ".repeat(40)
    );
    let windows = model.prepare_windows(&text, 32).expect("windows");
    assert!(windows.len() > 10, "{} windows", windows.len());
    for (n, window) in windows.iter().enumerate() {
        let (ids, span) = parts(window);
        let span = span.expect("window text");
        assert!(text.contains(span), "window {n}: {span:?}");
        let alone = model.prepare(span).expect("prepare");
        assert_eq!(parts(&alone).0, ids, "window {n}: {span:?}");
    }
    assert!(
        parts(&windows[0])
            .1
            .expect("text")
            .starts_with("you stupid idiot")
    );
    assert!(
        parts(&windows[windows.len() - 1])
            .1
            .expect("text")
            .ends_with("it was")
    );
}

/// The graph reads the text: the same token ids with another text score differently, so
/// the parity fixture (made with the text fed) would catch a classifier that dropped it.
#[test]
fn the_graph_reads_the_text() {
    let mut model = common::model("minilm-insult");
    let original = model.prepare("have a nice day").expect("prepare");
    let Prepared::Tokens { ids, mask, .. } = original.clone() else {
        panic!("token model gave text");
    };
    let swapped = Prepared::Tokens {
        ids,
        mask,
        text: Some("you stupid worthless idiot moron".into()),
    };
    let scores = model.infer(&[&original, &swapped], None).expect("infer");
    eprintln!(
        "same ids, own text {:.4}, insulting text {:.4}",
        scores[0][0], scores[1][0]
    );
    assert!(scores[1][0] > scores[0][0] + 0.05, "{scores:?}");
}

/// The policy's normalised view is what both inputs read: a disguised insult scored by
/// the policy (default view) gets the score of its normalised text scored directly.
#[test]
fn the_normalised_view_is_fed_as_text() {
    let disguised = "y0u 4r3 4 p4th3t1c 1d10t";
    let mut policy = Policy::new(vec![common::model("minilm-insult")], 16, 512);
    assert_eq!(Views::default(), Views::Normalised);
    let assessed = policy.assess(&[disguised], None).expect("assess");
    assert_eq!(policy.last_stats().normalised, 1);
    let mut model = common::model("minilm-insult");
    let normalised = Normalizer::with_words(model.vocabulary_words()).normalize(disguised);
    assert_eq!(normalised, "you are 4 pathetic idiot");
    let direct = model.score(&[&normalised]).expect("score");
    let got = assessed[0].scores["insult"];
    assert!(
        (got - direct[0][0]).abs() <= 1e-6,
        "{got} vs {}",
        direct[0][0]
    );
}
