//! Scores the parity fixture's texts with minilm-insult, `passes` times, in batches of
//! `batch` (1: one text per run; more: length-grouped), on one intra-op thread. Used by
//! `benches/instructions.sh` to count instructions under callgrind against Python.
//!
//! `cargo run --release -p offpath-classifier --example passes -- <passes> <batch>`

use std::path::PathBuf;

use offpath_classifier::{Model, SessionConfig, init_runtime};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let passes = args.next().ok_or("usage: passes <passes> <batch>")??;
    let batch = args.next().ok_or("usage: passes <passes> <batch>")??;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    init_runtime(&root.join(".tools/lib/libonnxruntime.so"))?;
    let config = SessionConfig {
        intra_threads: 1,
        ..SessionConfig::default()
    };
    let mut model = Model::load(&root.join("models/minilm-insult"), &config)?;
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("models/fixtures/parity.json"),
    )?)?;
    let texts: Vec<&str> = fixture["cases"]
        .as_array()
        .ok_or("fixture cases")?
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    for _ in 0..passes {
        if batch == 1 {
            for text in &texts {
                model.score(&[text])?;
            }
        } else {
            model.score_grouped(&texts, batch)?;
        }
    }
    Ok(())
}
