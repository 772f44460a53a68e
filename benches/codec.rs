//! The WebSocket codec by message size: decoding masked client frames (server role),
//! decoding unmasked server frames (client role), encoding, unmasking, and the
//! upgrade request parse. `cargo bench --bench codec`.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::ws::frame::apply_mask;
use ringcast::ws::{encode_masked, encode_unmasked, handshake, Decoder, Opcode, Role};

const SIZES: [(usize, &str); 6] = [
    (16, "16 B"),
    (125, "125 B"),
    (126, "126 B"),
    (4096, "4 KiB"),
    (65536, "64 KiB"),
    (1 << 20, "1 MiB"),
];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (size, label) in SIZES {
        let payload = vec![b'a'; size];
        group.throughput(Throughput::Bytes(size as u64));
        for (role, wire, name) in [
            (
                Role::Server,
                encode_masked(Opcode::Text, true, &payload, [1, 2, 3, 4]),
                "masked text frame, server role",
            ),
            (
                Role::Client,
                encode_unmasked(Opcode::Text, &payload),
                "unmasked text frame, client role",
            ),
            (
                Role::Server,
                encode_masked(Opcode::Binary, true, &payload, [1, 2, 3, 4]),
                "masked binary frame, server role",
            ),
        ] {
            group.bench_with_input(BenchmarkId::new(name, label), &wire, |b, wire| {
                let mut decoder = Decoder::new(role, 2 << 20);
                b.iter(|| {
                    let mut buf = BytesMut::from(&wire[..]);
                    black_box(decoder.decode(&mut buf).unwrap().unwrap())
                })
            });
        }
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (size, label) in SIZES {
        let payload = vec![b'a'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("unmasked frame, server role", label),
            &payload,
            |b, p| b.iter(|| black_box(encode_unmasked(Opcode::Text, p))),
        );
        group.bench_with_input(
            BenchmarkId::new("masked frame, client role", label),
            &payload,
            |b, p| b.iter(|| black_box(encode_masked(Opcode::Text, true, p, [9, 8, 7, 6]))),
        );
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (size, label) in SIZES {
        let mut data = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("word at a time", label), |b| {
            b.iter(|| apply_mask(black_box(&mut data), [1, 2, 3, 4], 0))
        });
        group.bench_function(BenchmarkId::new("byte at a time (baseline)", label), |b| {
            b.iter(|| {
                for (i, byte) in black_box(&mut data).iter_mut().enumerate() {
                    *byte ^= [1u8, 2, 3, 4][i % 4];
                }
            })
        });
    }
    group.finish();
}

fn handshake_parse(c: &mut Criterion) {
    let request = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\r\n";
    c.bench_function("parse a browser-like upgrade request", |b| {
        b.iter(|| black_box(handshake::parse_request(black_box(request), 8192).unwrap()))
    });
}

criterion_group!(benches, decode, encode, unmask, handshake_parse);
criterion_main!(benches);
