//! The transport's send path without the network: accept → ack → fan-out to every
//! member's queue → outbox. What a `send` frame costs the gateway, by room size.
//! `cargo bench -p offpath-transport --features bench`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpath_transport::Config;
use offpath_transport::bench::Room;

fn transport(c: &mut Criterion) {
    let mut group = c.benchmark_group("transport");
    for members in [2usize, 10, 100] {
        let config = Config {
            tenant: "bench".into(),
            ..Config::default()
        };
        let mut room = Room::new(config, members);
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("accept and fan out to {members}"), |b| {
            b.iter(|| {
                room.send("hello there, how is it going".into());
                room.drain();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transport);
criterion_main!(benches);
