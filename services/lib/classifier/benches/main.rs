//! Criterion benchmarks of the models (`cargo bench -p offpath-classifier --bench main`).
//!
//! * `classifier`: messages/s of tokenize + infer with the main model (minilm-insult, int8)
//!   at batch 1, 8 and 32, in arrival order and grouped by length, over the parity
//!   fixture's texts (mostly chat lines, a long tail up to 10 KiB). `benches/compare.sh`
//!   at the repository root runs the same batches through Python onnxruntime in the same
//!   run.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpath_classifier::{Model, SessionConfig, init_runtime};

/// The repository root (models and `.tools/` live there).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// The parity fixture's texts: the bench's "realistic mix of lengths".
fn bench_texts() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("models/fixtures/parity.json"))
        .expect("models/fixtures/parity.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["text"].as_str().map(String::from))
        .collect()
}

fn classifier(c: &mut Criterion) {
    let library = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/lib/libonnxruntime.so"));
    init_runtime(&library).expect("ONNX Runtime (run scripts/bootstrap)");
    let config = SessionConfig {
        intra_threads: 2,
        ..SessionConfig::default()
    };
    let mut model = Model::load(&root().join("models/minilm-insult"), &config).expect("model");
    let texts = bench_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("classifier");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(refs.len() as u64));
    for batch in [1, 8, 32] {
        group.bench_function(format!("minilm/arrival_order/batch_{batch}"), |b| {
            b.iter(|| {
                for chunk in refs.chunks(batch) {
                    model.score(chunk).expect("score");
                }
            })
        });
        if batch > 1 {
            group.bench_function(format!("minilm/length_grouped/batch_{batch}"), |b| {
                b.iter(|| model.score_grouped(&refs, batch).expect("score"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, classifier);
criterion_main!(benches);
