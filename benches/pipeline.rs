//! Three no-op stages over 1,000,000 items: palisade's pipeline against a hand-written
//! `futures::StreamExt::buffered` / `buffer_unordered` chain and a sequential loop.
//!
//! `cargo bench --no-default-features --features pipeline --bench pipeline`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::{stream, StreamExt};
use palisade::pipeline::{Order, PipelineService};

const ITEMS: u64 = 1_000_000;
const CONCURRENCY: usize = 16;
const BUFFER: usize = 64;

async fn noop(n: u64) -> u64 {
    black_box(n)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline/3-noop-stages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS));
    let rt = runtime();

    group.bench_function("sequential", |b| {
        b.to_async(&rt).iter(|| async {
            let mut sum = 0u64;
            for n in 0..ITEMS {
                sum = sum.wrapping_add(noop(noop(noop(n).await).await).await);
            }
            sum
        });
    });

    group.bench_function("futures-buffered", |b| {
        b.to_async(&rt).iter(|| async {
            stream::iter(0..ITEMS)
                .map(noop)
                .buffered(CONCURRENCY)
                .map(noop)
                .buffered(CONCURRENCY)
                .map(noop)
                .buffered(CONCURRENCY)
                .fold(0u64, |acc, n| async move { acc.wrapping_add(n) })
                .await
        });
    });

    group.bench_function("futures-buffer-unordered", |b| {
        b.to_async(&rt).iter(|| async {
            stream::iter(0..ITEMS)
                .map(noop)
                .buffer_unordered(CONCURRENCY)
                .map(noop)
                .buffer_unordered(CONCURRENCY)
                .map(noop)
                .buffer_unordered(CONCURRENCY)
                .fold(0u64, |acc, n| async move { acc.wrapping_add(n) })
                .await
        });
    });

    for (label, order) in [("palisade-ordered", Order::Preserved), ("palisade-unordered", Order::Completion)]
    {
        let pipeline = PipelineService::builder::<u64>()
            .stage_fn("one", |n: u64| async move { Ok::<_, Infallible>(noop(n).await) })
            .concurrency(CONCURRENCY)
            .buffer(BUFFER)
            .stage_fn("two", |n: u64| async move { Ok::<_, Infallible>(noop(n).await) })
            .concurrency(CONCURRENCY)
            .buffer(BUFFER)
            .stage_fn("three", |n: u64| async move { Ok::<_, Infallible>(noop(n).await) })
            .concurrency(CONCURRENCY)
            .buffer(BUFFER)
            .order(order)
            .build()
            .unwrap();
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                pipeline
                    .process_stream(stream::iter(0..ITEMS))
                    .fold(0u64, |acc, n| async move { acc.wrapping_add(n.unwrap()) })
                    .await
            });
        });
    }
    group.finish();
}

/// The same chains with stages that yield once (real async work: each call is parked and
/// woken), over fewer items.
fn bench_yielding(c: &mut Criterion) {
    const N: u64 = 100_000;
    async fn hop(n: u64) -> u64 {
        tokio::task::yield_now().await;
        black_box(n)
    }
    let mut group = c.benchmark_group("pipeline/3-yielding-stages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    let rt = runtime();

    group.bench_function("sequential", |b| {
        b.to_async(&rt).iter(|| async {
            let mut sum = 0u64;
            for n in 0..N {
                sum = sum.wrapping_add(hop(hop(hop(n).await).await).await);
            }
            sum
        });
    });
    group.bench_function("futures-buffered", |b| {
        b.to_async(&rt).iter(|| async {
            stream::iter(0..N)
                .map(hop)
                .buffered(CONCURRENCY)
                .map(hop)
                .buffered(CONCURRENCY)
                .map(hop)
                .buffered(CONCURRENCY)
                .fold(0u64, |acc, n| async move { acc.wrapping_add(n) })
                .await
        });
    });
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("one", |n: u64| async move { Ok::<_, Infallible>(hop(n).await) })
        .concurrency(CONCURRENCY)
        .buffer(BUFFER)
        .stage_fn("two", |n: u64| async move { Ok::<_, Infallible>(hop(n).await) })
        .concurrency(CONCURRENCY)
        .buffer(BUFFER)
        .stage_fn("three", |n: u64| async move { Ok::<_, Infallible>(hop(n).await) })
        .concurrency(CONCURRENCY)
        .buffer(BUFFER)
        .build()
        .unwrap();
    group.bench_function("palisade-ordered", |b| {
        b.to_async(&rt).iter(|| async {
            pipeline
                .process_stream(stream::iter(0..N))
                .fold(0u64, |acc, n| async move { acc.wrapping_add(n.unwrap()) })
                .await
        });
    });
    group.finish();
}

criterion_group!(benches, bench, bench_yielding);
criterion_main!(benches);
