//! The cross-core inbox: messages per second from one pinned core to another through
//! `Hub` (bounded ArrayQueue + AtomicWaker wake-up), the consumer a monoio runtime as
//! in the server. Pins to CPUs 0 and 1. `cargo bench --bench inbox`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringcast::hub::Hub;
use ringcast::CoreId;

const BATCH: u64 = 100_000;

fn inbox(c: &mut Criterion) {
    let hub = Hub::<Bytes>::new(2, 65_536);
    let received = Arc::new(AtomicU64::new(0));
    let (consumer_hub, consumer_count) = (hub.clone(), received.clone());
    std::thread::spawn(move || {
        let _ = monoio::utils::bind_to_cpu_set([1]);
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let mut batch = Vec::with_capacity(256);
            loop {
                consumer_hub.recv_batch(CoreId(1), &mut batch, 256).await;
                consumer_count.fetch_add(batch.len() as u64, Ordering::Release);
                batch.clear();
            }
        })
    });
    let _ = monoio::utils::bind_to_cpu_set([0]);
    let payload = Bytes::from_static(&[7u8; 64]);
    let mut group = c.benchmark_group("cross-core inbox");
    group.throughput(Throughput::Elements(BATCH));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("64-byte Bytes, core 0 to core 1", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = received.load(Ordering::Acquire) + BATCH;
                for _ in 0..BATCH {
                    let mut envelope = payload.clone();
                    while let Err(back) = hub.try_push(CoreId(1), envelope) {
                        envelope = back;
                        std::hint::spin_loop();
                    }
                }
                while received.load(Ordering::Acquire) < target {
                    std::hint::spin_loop();
                }
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, inbox);
criterion_main!(benches);
