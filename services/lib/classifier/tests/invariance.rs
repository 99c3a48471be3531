//! A verdict is a function of the text, the model and the policy alone (issue 15, section
//! 1): the real minilm-insult model, through the real ONNX Runtime, gives every parity
//! fixture text the same insult score alone and inside batches of different sizes,
//! neighbours and padding, within 1e-4.

mod common;

use serde_json::Value;

/// Largest allowed |score alone − score in a batch|.
const TOLERANCE: f32 = 1e-4;

fn fixture_texts() -> Vec<String> {
    let text = std::fs::read_to_string(common::root().join("models/fixtures/parity.json"))
        .expect("models/fixtures/parity.json");
    let json: Value = serde_json::from_str(&text).expect("fixture JSON");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["text"].as_str().expect("text").to_string())
        .collect()
}

/// A fixed shuffle (xorshift64; no dependency, same order on every run).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

/// Neighbours that are not fixture texts: short, chat-length and one that pads every row of
/// its batch to ~200 tokens.
fn strangers() -> Vec<String> {
    vec![
        "ok".to_string(),
        "what a lovely afternoon, see you all at the meetup".to_string(),
        "you are all wonderful people ".repeat(3),
        "blah ".repeat(200),
    ]
}

/// Every fixture text scored alone, then in shuffled batches of 3 and 32 fixture
/// texts, half of them with extra strangers (one of them long, so the batch is padded far
/// beyond its texts): the largest difference, over every label (the insult column and the
/// harm categories), stays within 1e-4.
#[test]
fn scores_do_not_depend_on_the_batch() {
    let texts = fixture_texts();
    let mut model = common::model("minilm-insult");
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| model.score(&[t.as_str()]).expect("score").remove(0))
        .collect();
    assert!(alone[0].len() > 1, "every label is compared");
    let strangers = strangers();
    let mut worst = (0.0_f32, 0_usize, 0_usize);
    // The smallest batch and the moderator's largest (`--max-batch` 32), each with other
    // neighbours and padding in every chunk; 8 and 16 as well made the test take 80 s.
    for (seed, size) in [(1, 3), (4, 32)] {
        let order = shuffled(texts.len(), seed);
        for (n, chunk) in order.chunks(size).enumerate() {
            let mut batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            if n % 2 == 1 {
                // Strangers in front, so the fixture texts also move to other rows.
                let extra = strangers.iter().map(String::as_str);
                batch.splice(0..0, extra.take(1 + n % strangers.len()));
            }
            let offset = batch.len() - chunk.len();
            let scores = model.score(&batch).expect("score");
            for (row, &i) in chunk.iter().enumerate() {
                let delta = scores[offset + row]
                    .iter()
                    .zip(&alone[i])
                    .map(|(b, a)| (b - a).abs())
                    .fold(0.0_f32, f32::max);
                if delta > worst.0 {
                    worst = (delta, i, size);
                }
            }
        }
    }
    let (delta, i, size) = worst;
    eprintln!(
        "max |alone - in a batch| = {delta:.2e} (text {:?}, batches of {size})",
        texts[i].chars().take(40).collect::<String>()
    );
    assert!(
        delta <= TOLERANCE,
        "a score moved by {delta:.2e} with its batch (text {:?}, batches of {size})",
        texts[i].chars().take(40).collect::<String>()
    );
}
