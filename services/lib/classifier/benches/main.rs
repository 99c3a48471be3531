//! Criterion benchmarks of the models (`cargo bench -p offpath-classifier --bench main`).
//!
//! * `classifier`: messages/s of tokenize + infer with the main model (minilm-insult, int8)
//!   at batch 1, 8 and 32, in arrival order and grouped by length, over the parity
//!   fixture's texts (mostly chat lines, a long tail up to 10 KiB). `benches/compare.sh`
//!   at the repository root runs the same batches through Python onnxruntime in the same
//!   run.
//! * `policy`: messages/s of the whole policy (both models, the moderator's default
//!   sub-batch 16 and 512 padded tokens per run): chat lines as written (`Views::Raw`),
//!   the same with the default view (`Views::Normalised`: clean lines cost only the
//!   normaliser), disguised lines (scored normalised), and one long text read in windows
//!   against one 256-token window (the cost of the old truncation).

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpath_classifier::{Model, SessionConfig, Views, init_runtime, policy::Policy};

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

fn runtime() {
    let library = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/lib/libonnxruntime.so"));
    init_runtime(&library).expect("ONNX Runtime (run scripts/bootstrap)");
}

fn classifier(c: &mut Criterion) {
    runtime();
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

fn policy(c: &mut Criterion) {
    runtime();
    let config = SessionConfig {
        intra_threads: 2,
        ..SessionConfig::default()
    };
    let load = |name: &str| Model::load(&root().join("models").join(name), &config).expect("model");
    let new_policy = || Policy::new(vec![load("minilm-insult"), load("profanity")], 16, 512);
    let lines: Vec<String> = bench_texts()
        .into_iter()
        .filter(|t| t.len() <= 200)
        .collect();
    let disguised: Vec<String> = lines
        .iter()
        .map(|l| l.replace('o', "0").replace('i', "\u{456}"))
        .collect();
    let long = lines.join(" ").repeat(8);
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines.len() as u64));
    for (name, views, texts) in [
        ("chat_lines/raw", Views::Raw, &lines),
        ("chat_lines/normalised", Views::Normalised, &lines),
        ("disguised_lines/normalised", Views::Normalised, &disguised),
    ] {
        let mut policy = new_policy().with_views(views);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        group.bench_function(name, |b| {
            b.iter(|| {
                for chunk in refs.chunks(32) {
                    policy.assess(chunk, None).expect("assess");
                }
            })
        });
    }
    group.throughput(Throughput::Elements(1));
    // One 256-token window costs what the old truncation to 256 tokens cost.
    for (name, window_tokens, windows) in [
        ("long_text/one_256_token_window", 256, 1),
        (
            "long_text/windows",
            offpath_classifier::policy::DEFAULT_WINDOW_TOKENS,
            192,
        ),
    ] {
        let mut policy = new_policy()
            .with_views(Views::Raw)
            .with_window_tokens(window_tokens)
            .with_max_windows(windows);
        policy.assess(&[&long], None).expect("assess");
        eprintln!("{name}: {} windows", 1 + policy.last_stats().extra_windows);
        group.bench_function(name, |b| {
            b.iter(|| policy.assess(&[&long], None).expect("assess"))
        });
    }
    group.finish();
}

criterion_group!(benches, classifier, policy);
criterion_main!(benches);
