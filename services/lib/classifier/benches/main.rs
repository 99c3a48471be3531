//! Criterion benchmarks of the models (`cargo bench -p offpath-classifier --bench main`).
//!
//! * `classifier`: messages/s of tokenize + infer with the main model (minilm-insult, int8)
//!   at batch 1, 8 and 32, in arrival order and grouped by length, over the parity
//!   fixture's texts (mostly chat lines, a long tail up to 10 KiB). `benches/compare.sh`
//!   at the repository root runs the same batches through Python onnxruntime in the same
//!   run.
//! * `defaults`: messages/s of one model at the moderator's default settings (2 inference
//!   threads with one intra-op thread each; batches of up to 32 split by `plan_batches`
//!   into runs of at most 16 texts and 512 padded tokens). The models are the directories
//!   in `$OFFPATH_BENCH_MODELS` (`label=dir,…`; default `shipped=models/minilm-insult`):
//!   `benches/compare_models.sh` compares candidates side by side in one run.
//! * `policy`: messages/s of the whole policy (both models, the moderator's default
//!   sub-batch 16 and 512 padded tokens per run): chat lines as written (`Views::Raw`),
//!   the same with the default view (`Views::Normalised`: clean lines cost only the
//!   normaliser), disguised lines (scored normalised), and one long text read in windows
//!   against one 256-token window (the cost of the old truncation); and the cost of
//!   locating spans (`policy/spans/*`): the everyday-chat development set (half aimed
//!   harassment, so about half its lines are flagged and read again: the worst case of
//!   ordinary chat) with and without reading flagged lines again in short windows.
//!
//! Run by the test suite (no `--bench` argument: criterion's test mode runs each routine
//! once), every group works on a small sample of the texts: the suite checks that each case
//! runs, not how fast (a full pass of every case took 8 minutes of the suite's debug run).

use std::path::PathBuf;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use offpath_classifier::{
    Model, Prepared, SessionConfig, Views, init_runtime, plan_batches, policy::Policy,
};

/// The repository root (models and `.tools/` live there).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// `$ORT_DYLIB_PATH`, else the bootstrap's `.tools/lib/libonnxruntime.so`.
fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/lib/libonnxruntime.so"))
}

/// Whether this is the test suite's run of the benchmarks (criterion's test mode), not
/// `cargo bench`.
fn smoke() -> bool {
    !std::env::args().any(|arg| arg == "--bench")
}

/// Whether the case `id` (`group/name`, or a group's `group/` prefix) can be selected by
/// this run. Only in [`smoke`] mode, where the suite runs one case per process
/// (`--exact group/name`): the setup of cases that will not run (loading a dozen sessions)
/// is skipped. Under `cargo bench` every setup runs and criterion filters.
fn wanted(id: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !smoke() || args.iter().any(|arg| arg == "--list") {
        return true;
    }
    let filters: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f.starts_with(id) || id.starts_with(f.as_str()))
}

/// The parity fixture's texts: the bench's "realistic mix of lengths" (in [`smoke`] mode,
/// an even sample of 24 of them).
fn bench_texts() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("models/fixtures/parity.json"))
        .expect("models/fixtures/parity.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let texts: Vec<String> = json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["text"].as_str().map(String::from))
        .collect();
    if !smoke() {
        return texts;
    }
    let step = (texts.len() / 24).max(1);
    texts.into_iter().step_by(step).take(24).collect()
}

fn classifier(c: &mut Criterion) {
    // A comparison of other models (benches/compare_models.sh) does not load the shipped one.
    if std::env::var_os("OFFPATH_BENCH_MODELS").is_some() || !wanted("classifier/") {
        return;
    }
    init_runtime(&ort_library()).expect("ONNX Runtime (run scripts/bootstrap)");
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

/// The moderator's defaults (services/moderator/src/config.rs): `--inference-threads`,
/// `--intra-threads`, `--max-batch`, `--sub-batch`, `--max-batch-tokens`.
const THREADS: usize = 2;
const MAX_BATCH: usize = 32;
const SUB_BATCH: usize = 16;
const MAX_BATCH_TOKENS: usize = 512;

/// `label=dir` pairs from `$OFFPATH_BENCH_MODELS` (dirs relative to the repository root).
fn bench_models() -> Vec<(String, PathBuf)> {
    let spec = std::env::var("OFFPATH_BENCH_MODELS")
        .unwrap_or_else(|_| "shipped=models/minilm-insult".into());
    spec.split(',')
        .map(|pair| {
            let (label, dir) = pair
                .split_once('=')
                .expect("OFFPATH_BENCH_MODELS: label=dir");
            (label.to_string(), root().join(dir))
        })
        .collect()
}

/// One inference thread's share: batches of `MAX_BATCH` in arrival order, each split into
/// length-grouped runs as the moderator's policy does.
fn moderate(model: &mut Model, texts: &[&str]) {
    for batch in texts.chunks(MAX_BATCH) {
        let prepared: Vec<Prepared> = batch
            .iter()
            .map(|t| model.prepare(t).expect("prepare"))
            .collect();
        let lengths: Vec<usize> = prepared.iter().map(Prepared::len).collect();
        for group in plan_batches(&lengths, SUB_BATCH, MAX_BATCH_TOKENS) {
            let run: Vec<&Prepared> = group.iter().map(|&i| &prepared[i]).collect();
            model.infer(&run, None).expect("infer");
        }
    }
}

fn defaults(c: &mut Criterion) {
    if !wanted("defaults/") {
        return;
    }
    init_runtime(&ort_library()).expect("ONNX Runtime (run scripts/bootstrap)");
    let texts = bench_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("defaults");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(refs.len() as u64));
    for (label, dir) in bench_models() {
        let mut models: Vec<Model> = (0..THREADS)
            .map(|_| Model::load(&dir, &SessionConfig::default()).expect("model"))
            .collect();
        // Each thread takes every THREADS-th batch, as the moderator's pool hands them out.
        let shares: Vec<Vec<&str>> = (0..THREADS)
            .map(|t| {
                refs.chunks(MAX_BATCH)
                    .skip(t)
                    .step_by(THREADS)
                    .flatten()
                    .copied()
                    .collect()
            })
            .collect();
        group.bench_function(label, |b| {
            b.iter(|| {
                std::thread::scope(|scope| {
                    for (model, share) in models.iter_mut().zip(&shares) {
                        scope.spawn(move || moderate(model, share));
                    }
                })
            })
        });
    }
    group.finish();
}

fn policy(c: &mut Criterion) {
    if std::env::var_os("OFFPATH_BENCH_MODELS").is_some() || !wanted("policy/") {
        return;
    }
    init_runtime(&ort_library()).expect("ONNX Runtime (run scripts/bootstrap)");
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
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    policy_views(&mut group, &new_policy, &lines);
    policy_long_text(&mut group, &new_policy, &lines.join(" ").repeat(8));
    policy_spans(&mut group, &new_policy);
    group.finish();
}

/// `policy/spans/located` and `policy/spans/windows_only`: the everyday-chat development
/// set's lines with the default views, with and without locating flagged lines' spans.
fn policy_spans(group: &mut BenchmarkGroup<'_, WallTime>, new_policy: &dyn Fn() -> Policy) {
    let set = std::fs::read_to_string(root().join("models/eval/everyday-chat-2.tsv"))
        .expect("models/eval/everyday-chat-2.tsv");
    let mut lines: Vec<&str> = set
        .lines()
        .skip(1)
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .collect();
    if smoke() {
        lines.truncate(24);
    }
    group.throughput(Throughput::Elements(lines.len() as u64));
    for (name, locate) in [("spans/located", true), ("spans/windows_only", false)] {
        if !wanted(&format!("policy/{name}")) {
            continue;
        }
        let mut policy = new_policy().with_located_spans(locate);
        let (mut read, mut windows) = (0, 0);
        for chunk in lines.chunks(32) {
            policy.assess(chunk, None).expect("assess");
            read += chunk.len() + policy.last_stats().extra_windows;
            windows += policy.last_stats().span_windows;
        }
        eprintln!(
            "{name}: {read} texts and windows scored, {windows} short windows read to locate spans"
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                for chunk in lines.chunks(32) {
                    policy.assess(chunk, None).expect("assess");
                }
            })
        });
    }
}

/// `policy/chat_lines/*` and `policy/disguised_lines/*`: `lines` as written and disguised
/// (`o` → `0`, `i` → Cyrillic `і`), each through the views it is benched with.
fn policy_views(
    group: &mut BenchmarkGroup<'_, WallTime>,
    new_policy: &dyn Fn() -> Policy,
    lines: &[String],
) {
    let disguised: Vec<String> = lines
        .iter()
        .map(|l| l.replace('o', "0").replace('i', "\u{456}"))
        .collect();
    group.throughput(Throughput::Elements(lines.len() as u64));
    for (name, views, texts) in [
        ("chat_lines/raw", Views::Raw, lines),
        ("chat_lines/normalised", Views::Normalised, lines),
        (
            "disguised_lines/normalised",
            Views::Normalised,
            &disguised[..],
        ),
    ] {
        if !wanted(&format!("policy/{name}")) {
            continue;
        }
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
}

/// `policy/long_text/*`: one long text read in windows, against one 256-token window.
fn policy_long_text(
    group: &mut BenchmarkGroup<'_, WallTime>,
    new_policy: &dyn Fn() -> Policy,
    long: &str,
) {
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
        if !wanted(&format!("policy/{name}")) {
            continue;
        }
        let mut policy = new_policy()
            .with_views(Views::Raw)
            .with_window_tokens(window_tokens)
            .with_max_windows(windows);
        policy.assess(&[long], None).expect("assess");
        eprintln!("{name}: {} windows", 1 + policy.last_stats().extra_windows);
        group.bench_function(name, |b| {
            b.iter(|| policy.assess(&[long], None).expect("assess"))
        });
    }
}

criterion_group!(benches, classifier, defaults, policy);
criterion_main!(benches);
