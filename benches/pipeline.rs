//! Three stages over a stream: palisade's pipeline against a hand-written
//! `futures::StreamExt::buffered` / `buffer_unordered` chain and a sequential loop.
//!
//! - `pipeline/3-noop-stages`: 1,000,000 items through three no-op stages;
//! - `pipeline/3-yielding-stages`: 100,000 items through three stages that yield once each
//!   (every call is parked and woken, like real I/O).
//!
//! Every chain runs 16 calls per stage at once (palisade: buffers of 64 between stages), on a
//! current-thread runtime.
//!
//! `cargo bench --no-default-features --features pipeline --bench pipeline`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::{stream, StreamExt};
use palisade::pipeline::{Execution, Order, PipelineService, PipelineStream};

const CONCURRENCY: usize = 16;
const BUFFER: usize = 64;

async fn noop(n: u64) -> u64 {
    black_box(n)
}

async fn hop(n: u64) -> u64 {
    tokio::task::yield_now().await;
    black_box(n)
}

async fn noop_stage(n: u64) -> Result<u64, Infallible> {
    Ok(noop(n).await)
}

async fn hop_stage(n: u64) -> Result<u64, Infallible> {
    Ok(hop(n).await)
}

/// Three stages, each with concurrency 16 and a buffer of 64.
fn three_stages<F, Fut>(f: F, order: Order, execution: Execution) -> impl Fn(u64) -> PipelineStream<u64>
where
    F: FnMut(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<u64, Infallible>> + Send + 'static,
{
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("one", f.clone())
        .concurrency(CONCURRENCY)
        .buffer(BUFFER)
        .stage_fn("two", f.clone())
        .concurrency(CONCURRENCY)
        .buffer(BUFFER)
        .stage_fn("three", f)
        .concurrency(CONCURRENCY)
        .buffer(BUFFER)
        .order(order)
        .execution(execution)
        .build()
        .unwrap();
    move |items| pipeline.process_stream(stream::iter(0..items))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn bench_noop(c: &mut Criterion) {
    const ITEMS: u64 = 1_000_000;
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
    for (label, order, execution) in [
        ("palisade-ordered", Order::Preserved, Execution::Tasks),
        ("palisade-unordered", Order::Completion, Execution::Tasks),
        ("palisade-ordered-inline", Order::Preserved, Execution::Inline),
    ] {
        let pipeline = three_stages(noop_stage, order, execution);
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                pipeline(ITEMS).fold(0u64, |acc, n| async move { acc.wrapping_add(n.unwrap()) }).await
            });
        });
    }
    group.finish();
}

fn bench_yielding(c: &mut Criterion) {
    const ITEMS: u64 = 100_000;
    let mut group = c.benchmark_group("pipeline/3-yielding-stages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS));
    let rt = runtime();

    group.bench_function("sequential", |b| {
        b.to_async(&rt).iter(|| async {
            let mut sum = 0u64;
            for n in 0..ITEMS {
                sum = sum.wrapping_add(hop(hop(hop(n).await).await).await);
            }
            sum
        });
    });
    group.bench_function("futures-buffered", |b| {
        b.to_async(&rt).iter(|| async {
            stream::iter(0..ITEMS)
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
    for (label, execution) in
        [("palisade-ordered", Execution::Tasks), ("palisade-ordered-inline", Execution::Inline)]
    {
        let pipeline = three_stages(hop_stage, Order::Preserved, execution);
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                pipeline(ITEMS).fold(0u64, |acc, n| async move { acc.wrapping_add(n.unwrap()) }).await
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_noop, bench_yielding);
criterion_main!(benches);
