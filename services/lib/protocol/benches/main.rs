//! Criterion benchmarks of the wire contract (`cargo bench -p offpath-protocol --bench main`).
//!
//! * `protocol`: the strict request decoder against a plain `serde_json` derive decode of
//!   the same bytes (the baseline, measured in the same run), for a short chat line and a
//!   12 KiB text; the ratio tells what strictness costs.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
        report: None,
        context: Vec::new(),
        mentions: Vec::new(),
        account_created_ms: None,
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

criterion_group!(benches, protocol);
criterion_main!(benches);
