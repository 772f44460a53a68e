//! Fan-out on one core: one message encoded once and queued on 1, 100 and 10,000
//! connections (a `Bytes` clone each, the engine's real `Conn::push`); the time per
//! recipient should stay flat. `cargo bench --bench fanout`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::conn::{Conn, ConnPhase};
use ringcast::ws::{encode_unmasked, Opcode, OutFrame};

fn open_conns(n: usize) -> Vec<Conn> {
    let now = Instant::now();
    (0..n)
        .map(|i| {
            let mut conn = Conn::new(i as u32, -1, now, now + Duration::from_secs(5));
            conn.phase = ConnPhase::Open;
            conn
        })
        .collect()
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan out one 64-byte message");
    let deadline = Instant::now() + Duration::from_secs(5);
    for members in [1usize, 100, 10_000] {
        let mut conns = open_conns(members);
        let mut drained = Vec::with_capacity(64);
        group.throughput(Throughput::Elements(members as u64));
        group.bench_function(
            BenchmarkId::new("encode once, clone per member", members),
            |b| {
                b.iter(|| {
                    let frame =
                        OutFrame::preencoded(encode_unmasked(Opcode::Text, black_box(&[b'm'; 64])));
                    for conn in conns.iter_mut() {
                        conn.push(frame.clone(), 4 << 20, || deadline);
                    }
                    // What the writer does later, outside the timed fan-out's concern but
                    // needed to keep queues from growing across iterations.
                    for conn in conns.iter_mut() {
                        conn.take_batch(&mut drained, 64);
                        drained.clear();
                    }
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("encode per member (baseline)", members),
            |b| {
                b.iter(|| {
                    for conn in conns.iter_mut() {
                        let frame = OutFrame::new(
                            Opcode::Text,
                            Bytes::copy_from_slice(black_box(&[b'm'; 64])),
                        );
                        conn.push(frame, 4 << 20, || deadline);
                    }
                    for conn in conns.iter_mut() {
                        conn.take_batch(&mut drained, 64);
                        drained.clear();
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
