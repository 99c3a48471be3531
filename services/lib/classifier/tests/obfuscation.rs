//! Obfuscation: insults the pipeline catches in plain form stay caught when users disguise
//! them, and disguised clean texts do not start being flagged.
//!
//! The set is made here, from the **train** split only (`train.csv`; the held-out test
//! split stays untouched for quality figures): a seeded sample of chat-length insults and
//! clean texts, each put through every transform with its own fixed seed. The pipeline is
//! the real one: both models from `models/`, ONNX Runtime, `Policy::assess` with the
//! moderator's default batch settings, and the policy's normaliser. The table printed
//! compares `Views::Raw` (the text as written, as before normalisation existed) with the
//! two other views; the goals are asserted for the policy's default view.

mod common;

use std::collections::BTreeMap;

use offpath_classifier::{
    Decision, Label, Model, Normalizer, SessionConfig, Views, policy::Policy,
};

/// Texts per class in the sample.
const SAMPLE: usize = 100;
/// Chat length: longer comments are essays, not chat lines.
const MAX_CHARS: usize = 120;
/// The moderator's defaults (`--sub-batch`, `--max-batch-tokens`).
const SUB_BATCH: usize = 16;
const MAX_BATCH_TOKENS: usize = 512;

/// Seeded generator (splitmix64): the set is the same on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

type Transform = fn(&str, &mut Rng) -> String;

/// Applies `f` to every word of at least three letters, keeping the spaces.
fn per_word(text: &str, rng: &mut Rng, f: impl Fn(&str, &mut Rng) -> String) -> String {
    text.split(' ')
        .map(|w| {
            if w.chars().filter(|c| c.is_alphabetic()).count() >= 3 {
                f(w, rng)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `you idiot` → `y o u  i d i o t`.
fn spaced(text: &str, _: &mut Rng) -> String {
    text.split_whitespace()
        .map(|w| w.chars().map(String::from).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Spaced letters with noise: each gap between letters a space, a dot, an underscore, a
/// hyphen, an asterisk or a dot and a space; words two or three spaces apart:
/// `you idiot` → `y.o u   i_d. i o*t`.
fn noisy_spaced(text: &str, rng: &mut Rng) -> String {
    const GAPS: [&str; 7] = [" ", " ", ".", "_", "-", "*", ". "];
    let mut out = String::new();
    for (n, word) in text.split_whitespace().enumerate() {
        if n > 0 {
            out.push_str(if rng.chance(0.5) { "  " } else { "   " });
        }
        for (i, c) in word.chars().enumerate() {
            if i > 0 {
                out.push_str(GAPS[rng.below(GAPS.len())]);
            }
            out.push(c);
        }
    }
    out
}

/// Most letters with a digit or symbol look-alike replaced: `idiot` → `1d10t`.
fn leetspeak(text: &str, rng: &mut Rng) -> String {
    per_word(text, rng, |w, rng| {
        w.chars()
            .map(|c| {
                let leet = match c.to_ascii_lowercase() {
                    'a' => '4',
                    'e' => '3',
                    'i' => '1',
                    'o' => '0',
                    's' => '5',
                    't' => '7',
                    _ => return c,
                };
                if rng.chance(0.7) { leet } else { c }
            })
            .collect()
    })
}

/// Half the letters that have a Cyrillic or Greek twin replaced by it: `idiot` → `іdіоt`.
fn homoglyphs(text: &str, rng: &mut Rng) -> String {
    per_word(text, rng, |w, rng| {
        w.chars()
            .map(|c| {
                let twin = match c {
                    'a' => 'а',
                    'c' => 'с',
                    'e' => 'е',
                    'i' => 'і',
                    'o' if rng.chance(0.5) => 'ο',
                    'o' => 'о',
                    'p' => 'р',
                    'x' => 'х',
                    'y' => 'у',
                    's' => 'ѕ',
                    'j' => 'ј',
                    'h' => 'һ',
                    _ => return c,
                };
                if rng.chance(0.5) { twin } else { c }
            })
            .collect()
    })
}

/// A hyphen at a random inner position of each word: `idiot` → `id-iot`.
fn inner_hyphen(text: &str, rng: &mut Rng) -> String {
    per_word(text, rng, |w, rng| insert_inner(w, rng, "-"))
}

/// A zero-width character at a random inner position of each word.
fn zero_width(text: &str, rng: &mut Rng) -> String {
    const INVISIBLE: [&str; 5] = ["\u{200b}", "\u{200c}", "\u{200d}", "\u{2060}", "\u{feff}"];
    per_word(text, rng, |w, rng| {
        let mark = INVISIBLE[rng.below(INVISIBLE.len())];
        insert_inner(w, rng, mark)
    })
}

fn insert_inner(word: &str, rng: &mut Rng, mark: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let at = 1 + rng.below(chars.len() - 1);
    let mut out: String = chars[..at].iter().collect();
    out.push_str(mark);
    out.extend(&chars[at..]);
    out
}

/// One letter of each word repeated 3–6 more times: `idiot` → `idiooooot`.
fn stretched(text: &str, rng: &mut Rng) -> String {
    per_word(text, rng, |w, rng| {
        let letters: Vec<usize> = w
            .char_indices()
            .filter(|(_, c)| c.is_alphabetic())
            .map(|(i, _)| i)
            .collect();
        let at = letters[rng.below(letters.len())];
        let c = w[at..].chars().next().unwrap_or('a');
        let mut out = w[..at].to_string();
        out.extend(std::iter::repeat_n(c, 3 + rng.below(4)));
        out.push_str(&w[at..]);
        out
    })
}

/// Each word disguised by one of the word tricks, picked at random.
fn mixed(text: &str, rng: &mut Rng) -> String {
    const TRICKS: [Transform; 5] = [leetspeak, homoglyphs, inner_hyphen, zero_width, stretched];
    text.split(' ')
        .map(|w| TRICKS[rng.below(TRICKS.len())](w, rng))
        .collect::<Vec<_>>()
        .join(" ")
}

const TRANSFORMS: [(&str, Transform, u64); 8] = [
    ("spaced letters", spaced, 1),
    ("noisy spaced", noisy_spaced, 8),
    ("leetspeak", leetspeak, 2),
    ("homoglyphs", homoglyphs, 3),
    ("inner hyphen", inner_hyphen, 4),
    ("stretched", stretched, 5),
    ("zero-width", zero_width, 6),
    ("mixed", mixed, 7),
];

/// A seeded sample of chat-length train texts: `SAMPLE` insults, then `SAMPLE` clean.
fn sample() -> (Vec<String>, Vec<bool>) {
    let (texts, labels) = common::data::load_split("train.csv");
    let mut rng = Rng(15);
    let mut order: Vec<usize> = (0..texts.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut out = (Vec::new(), Vec::new());
    for want in [true, false] {
        let picked = order
            .iter()
            .filter(|&&i| labels[i] == want)
            .filter(|&&i| (10..=MAX_CHARS).contains(&texts[i].chars().count()))
            .take(SAMPLE);
        for &i in picked {
            out.0.push(texts[i].clone());
            out.1.push(want);
        }
    }
    (out.0, out.1)
}

/// Each text's scores as written, and as normalised when that differs.
struct Scored {
    raw: Vec<BTreeMap<String, f32>>,
    normalised: Vec<Option<BTreeMap<String, f32>>>,
}

/// The pipeline's models and thresholds, looking at texts as written (`Views::Raw`); the
/// other views are made from the same scores ([`flagged`]), which is what `Policy` does
/// with them, at half the inference time.
struct Pipeline {
    policy: Policy,
    normalizer: Normalizer,
    labels: Vec<Label>,
}

impl Pipeline {
    fn new() -> Self {
        common::runtime();
        let config = SessionConfig {
            intra_threads: 2,
            ..SessionConfig::default()
        };
        let dirs = ["minilm-insult", "profanity"].map(|n| common::root().join("models").join(n));
        let models: Vec<Model> = dirs
            .iter()
            .map(|d| Model::load(d, &config).expect("model"))
            .collect();
        let labels = models
            .iter()
            .flat_map(|m| m.manifest().labels.clone())
            .collect();
        let normalizer = Normalizer::with_words(models[0].vocabulary_words());
        let policy = Policy::new(models, SUB_BATCH, MAX_BATCH_TOKENS).with_views(Views::Raw);
        Self {
            policy,
            normalizer,
            labels,
        }
    }

    fn scores(&mut self, texts: &[&str]) -> Vec<BTreeMap<String, f32>> {
        let assessed = self.policy.assess(texts, None).expect("assess");
        assessed.into_iter().map(|a| a.scores).collect()
    }

    fn score(&mut self, texts: &[String]) -> Scored {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let raw = self.scores(&refs);
        let views: Vec<Option<String>> = texts
            .iter()
            .map(|t| self.normalizer.second_view(t))
            .collect();
        let differing: Vec<&str> = views.iter().flatten().map(String::as_str).collect();
        let mut scored = self.scores(&differing).into_iter();
        let normalised = views
            .iter()
            .map(|v| v.as_ref().and_then(|_| scored.next()))
            .collect();
        Scored { raw, normalised }
    }

    /// Whether text `i` is flagged when looked at in `views`, by a label that acts (a
    /// signal, profanity, is scored only: the moderator's built-in policy).
    fn flagged(&self, scored: &Scored, i: usize, views: Views) -> bool {
        let raw = &scored.raw[i];
        let normalised = scored.normalised[i].as_ref();
        self.labels.iter().filter(|l| !l.signal).any(|label| {
            let r = raw[&label.name];
            let score = match (views, normalised) {
                (Views::Raw, _) | (_, None) => r,
                (Views::Normalised, Some(n)) => n[&label.name],
                (Views::Both, Some(n)) => r.max(n[&label.name]),
            };
            Decision::for_score(label, score) >= Decision::Flag
        })
    }
}

const VIEWS: [Views; 3] = [Views::Raw, Views::Both, Views::Normalised];

/// Per transform and view: (share of plain-caught insults still caught, share of
/// plain-allowed clean texts flagged once disguised). "Plain-caught" is judged in the same
/// view.
fn measure(pipeline: &mut Pipeline, texts: &[String], labels: &[bool]) -> Vec<[(f64, f64); 3]> {
    let plain = pipeline.score(texts);
    let disguised: Vec<Scored> = TRANSFORMS
        .iter()
        .map(|(_, transform, seed)| {
            let mut rng = Rng(*seed);
            let changed: Vec<String> = texts.iter().map(|t| transform(t, &mut rng)).collect();
            pipeline.score(&changed)
        })
        .collect();
    disguised
        .iter()
        .map(|now| {
            VIEWS.map(|views| {
                let before = |i: usize| pipeline.flagged(&plain, i, views);
                let after = |i: usize| pipeline.flagged(now, i, views);
                let share = |insult: bool| {
                    let set: Vec<usize> = (0..texts.len())
                        .filter(|&i| labels[i] == insult && before(i) == insult)
                        .collect();
                    set.iter().filter(|&&i| after(i)).count() as f64 / set.len().max(1) as f64
                };
                (share(true), share(false))
            })
        })
        .collect()
}

/// Goals (issue 15) for the policy's default view, `Views::Normalised`: each transform
/// keeps ≥ 0.90 of the plain-caught insults caught and flags ≤ 0.05 of the plain-allowed
/// clean texts. The table shows every view, as written (before normalisation) first.
#[test]
fn disguised_insults_stay_caught() {
    let started = std::time::Instant::now();
    let (texts, labels) = sample();
    assert_eq!(
        texts.len(),
        2 * SAMPLE,
        "train split too small for the sample"
    );
    let table = measure(&mut Pipeline::new(), &texts, &labels);
    eprintln!("{SAMPLE} insults + {SAMPLE} clean train texts of at most {MAX_CHARS} characters");
    eprintln!(
        "transform        | caught: raw   both  normalised | clean flagged: raw   both  normalised"
    );
    for ((name, _, _), row) in TRANSFORMS.iter().zip(&table) {
        let [r, b, n] = row;
        eprintln!(
            "{name:<16} |         {:.3} {:.3} {:.3}      |                {:.3} {:.3} {:.3}",
            r.0, b.0, n.0, r.1, b.1, n.1
        );
    }
    eprintln!("measured in {:.1?}", started.elapsed());
    let chosen = VIEWS
        .iter()
        .position(|v| *v == Views::default())
        .expect("default view measured");
    for ((name, _, _), row) in TRANSFORMS.iter().zip(&table) {
        let (caught, false_positive) = row[chosen];
        assert!(
            caught >= 0.90,
            "{name}: {caught:.3} of plain-caught insults caught"
        );
        assert!(
            false_positive <= 0.05,
            "{name}: {false_positive:.3} of clean flagged"
        );
    }
}
