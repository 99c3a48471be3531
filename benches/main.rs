//! Criterion benchmarks, one group per concern (`cargo bench --bench main`).
//!
//! * `protocol`: the strict request decoder against a plain `serde_json` derive decode of
//!   the same bytes (the baseline, measured in the same run), for a short chat line and a
//!   12 KiB text; the ratio tells what strictness costs.
//! * `classifier`: messages/s of tokenize + infer with the main model (minilm-insult, int8)
//!   at batch 1, 8 and 32, in arrival order and grouped by length, over the parity
//!   fixture's texts (mostly chat lines, a long tail up to 10 KiB). `benches/compare.sh`
//!   runs the same batches through Python onnxruntime in the same run.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpath_classifier::{Model, SessionConfig, init_runtime};
use offpath_protocol::{Limits, ModerationRequest, PROTOCOL_VERSION, decode_request, encode};

fn request(text: String) -> Vec<u8> {
    encode(&ModerationRequest {
        v: PROTOCOL_VERSION,
        id: "01JDX3Q4V7M2K8ABCDEF".into(),
        tenant: "acme".into(),
        room: "lobby".into(),
        sender: "alice".into(),
        text,
        sent_at_ms: 1_764_288_000_000,
        deadline_ms: Some(1_764_288_005_000),
        priority: None,
        policy: None,
    })
}

fn protocol(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol");
    let cases = [
        (
            "chat_line",
            request("see you at the standup, bring the slides 🎉".into()),
        ),
        (
            "text_12k",
            request("lorem ipsum dolor sit amet ".repeat(455)),
        ),
    ];
    let limits = Limits::default();
    for (name, payload) in &cases {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("decode_strict/{name}"), |b| {
            b.iter(|| decode_request("offpath.req.acme", std::hint::black_box(payload), &limits))
        });
        group.bench_function(format!("serde_baseline/{name}"), |b| {
            b.iter(|| serde_json::from_slice::<ModerationRequest>(std::hint::black_box(payload)))
        });
    }
    group.finish();
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The parity fixture's texts: the bench's "realistic mix of lengths".
pub fn bench_texts() -> Vec<String> {
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

/// The transport's send path without the network: accept → ack → fan-out to every member's
/// queue → outbox. What a `send` frame costs the gateway, by room size.
fn transport(c: &mut Criterion) {
    use std::sync::Arc;
    use std::time::Instant;

    let mut group = c.benchmark_group("transport");
    for members in [2usize, 10, 100] {
        let (outbox, mut requests) = tokio::sync::mpsc::channel(1 << 20);
        let config = offpath_transport::Config {
            tenant: "bench".into(),
            ..offpath_transport::Config::default()
        };
        let hub = offpath_transport::hub::Hub::new(config, outbox);
        let mut receivers = Vec::new();
        let mut peers = Vec::new();
        for m in 0..members {
            let (peer, rx) = hub.register(Arc::from(format!("user{m}"))).expect("peer");
            hub.join(&peer, "room");
            peers.push(peer);
            receivers.push(rx);
        }
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("accept and fan out to {members}"), |b| {
            b.iter(|| {
                hub.accept(
                    &peers[0],
                    "room",
                    "hello there, how is it going".into(),
                    None,
                    Instant::now(),
                );
                // Keep queues from filling (a full queue would disconnect the member).
                for rx in &mut receivers {
                    while rx.frames.try_recv().is_ok() {}
                }
                while requests.try_recv().is_ok() {}
            })
        });
    }
    group.finish();
}

criterion_group!(benches, protocol, classifier, transport);
criterion_main!(benches);
