//! Decoding the room protocol's real client messages (60 B, 1 KiB, 64 KiB) with
//! serde_json and simd-json, borrowing `message` as raw JSON (it is relayed verbatim).
//! simd-json parses in place, so it pays for a copy of the input: the server must keep
//! the original bytes to relay. Then the load tool's reading of server messages: its
//! allocation-free scanner against the typed parse. `cargo bench --bench json`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[allow(
    dead_code,
    reason = "fields are what the parse must produce, read by black_box"
)]
struct ClientMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    room: Option<&'a str>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[allow(
    dead_code,
    reason = "fields are what the parse must produce, read by black_box"
)]
struct OwnedClientMessage {
    #[serde(rename = "type")]
    kind: String,
    room: Option<String>,
    message: Option<simd_json::OwnedValue>,
}

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let make = |text_len: usize| {
        format!(
            r#"{{"type":"room_message","room":"lobby","message":"{}"}}"#,
            "x".repeat(text_len)
        )
        .into_bytes()
    };
    vec![
        ("60 B", make(9)),
        ("1 KiB", make(973)),
        ("64 KiB", make(65_488)),
    ]
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode room_message");
    for (label, json) in messages() {
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("serde_json, message borrowed raw", label),
            &json,
            |b, json| {
                b.iter(|| {
                    black_box(
                        serde_json::from_slice::<ClientMessage>(json)
                            .unwrap()
                            .message
                            .map(|m| m.get().len()),
                    )
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("simd-json, on a copy", label),
            &json,
            |b, json| {
                b.iter(|| {
                    let mut copy = json.clone();
                    black_box(
                        simd_json::serde::from_slice::<OwnedClientMessage>(&mut copy)
                            .unwrap()
                            .kind
                            .len(),
                    )
                })
            },
        );
    }
    group.finish();
}

/// The load tool's side: reading what the server sends, typed (`proto::ServerMessage`,
/// what the client library does) or scanned (`proto::scan`, what the load tool does on
/// its hot path). The scanner exists because of this comparison.
fn scan_server_messages(c: &mut Criterion) {
    let room_message = br#"{"type":"room_message","room":"load-3","from":"client_0_5_1","message":"B0000000000000001000000000000002a0000000000000000","timestamp":1700000000}"#;
    let member_joined =
        br#"{"type":"member_joined","room":"load-3","client_id":"client_1_17_9","total_members":100}"#;
    let mut group = c.benchmark_group("scan server message");
    for (label, json) in [
        ("room_message", &room_message[..]),
        ("member_joined", &member_joined[..]),
    ] {
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(BenchmarkId::new("proto::scan", label), json, |b, json| {
            b.iter(|| black_box(ringcast::proto::scan::scan(json).unwrap().kind.len()))
        });
        group.bench_with_input(
            BenchmarkId::new("ServerMessage::parse", label),
            json,
            |b, json| {
                b.iter(|| {
                    let text = std::str::from_utf8(json).unwrap();
                    black_box(ringcast::proto::ServerMessage::parse(text).kind().len())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode, scan_server_messages);
criterion_main!(benches);
