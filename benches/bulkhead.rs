//! The bulkhead's pass path (a permit is always free): bare service vs tower's
//! `ConcurrencyLimit` vs palisade's `Bulkhead` vs tower-resilience's bulkhead, on one thread
//! and on two threads sharing one pool; and the adaptive limit's pass path (always under its
//! limit, every call a sample) against the same `ConcurrencyLimit`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_pass_by_value, missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_bulkhead::adaptive::{Fixed, Vegas};
use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
use palisade_core::WhenFull;
use tower::limit::ConcurrencyLimitLayer;
use tower::{service_fn, Layer, Service};

const PERMITS: usize = 1_000;

fn bare() -> impl Service<
    u64,
    Response = u64,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<u64, std::convert::Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)))
}

/// One `poll_ready` + `call` + poll of the response future to completion.
#[inline]
fn once<S: Service<u64, Response = u64>>(svc: &mut S, cx: &mut Context<'_>, x: u64) -> u64
where
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => unreachable!("under the limit"),
    }
    let fut = pin!(svc.call(x));
    match fut.poll(cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => unreachable!("ready inner service"),
    }
}

fn single<S>(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, mut svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    c.bench_function(format!("{name}/1-thread"), |b| {
        let mut x = 0u64;
        b.iter(|| {
            x = x.wrapping_add(1);
            black_box(once(&mut svc, &mut cx, black_box(x)))
        });
    });
}

#[allow(clippy::disallowed_methods)]
fn two_threads<S>(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, svc: S)
where
    S: Service<u64, Response = u64> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    c.bench_function(format!("{name}/2-threads"), |b| {
        b.iter_custom(|iters| {
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let mut svc = svc.clone();
                        let barrier = &barrier;
                        scope.spawn(move || {
                            let mut cx = Context::from_waker(Waker::noop());
                            barrier.wait();
                            let start = std::time::Instant::now();
                            for x in 0..iters {
                                black_box(once(&mut svc, &mut cx, black_box(x)));
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).max().unwrap_or(Duration::ZERO)
            })
        });
    });
}

fn bulkhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulkhead");

    // The same waiting behaviour as `ConcurrencyLimit` (never exercised: a permit is free).
    let palisade = || {
        BulkheadLayer::builder()
            .max_concurrent(PERMITS)
            .when_full(WhenFull::wait(Duration::MAX))
            .build()
            .unwrap()
            .layer(bare())
    };
    let concurrency_limit = || ConcurrencyLimitLayer::new(PERMITS).layer(bare());
    let resilience = || {
        tower_resilience_bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(PERMITS)
            .backpressure()
            .build()
            .unwrap()
            .layer(bare())
    };

    single(&mut g, "bare", bare());
    single(&mut g, "tower-concurrency-limit", concurrency_limit());
    single(&mut g, "palisade", palisade());
    single(&mut g, "tower-resilience-bulkhead", resilience());

    two_threads(&mut g, "bare", bare());
    two_threads(&mut g, "tower-concurrency-limit", concurrency_limit());
    two_threads(&mut g, "palisade", palisade());
    two_threads(&mut g, "tower-resilience-bulkhead", resilience());

    g.finish();
}

fn adaptive_limit(c: &mut Criterion) {
    let mut g = c.benchmark_group("adaptive_limit");
    let concurrency_limit = || ConcurrencyLimitLayer::new(PERMITS).layer(bare());
    // A constant limit: the partition and backlog machinery, no algorithm work.
    let fixed =
        || AdaptiveLimitLayer::builder().algorithm(Fixed::new(PERMITS)).build().unwrap().layer(bare());
    // The default algorithm (concurrency-limits' Vegas): one update per call.
    let vegas = || {
        AdaptiveLimitLayer::builder()
            .algorithm(Vegas::default().max_limit(PERMITS))
            .build()
            .unwrap()
            .layer(bare())
    };

    single(&mut g, "tower-concurrency-limit", concurrency_limit());
    single(&mut g, "palisade-fixed", fixed());
    single(&mut g, "palisade-vegas", vegas());

    two_threads(&mut g, "tower-concurrency-limit", concurrency_limit());
    two_threads(&mut g, "palisade-fixed", fixed());
    two_threads(&mut g, "palisade-vegas", vegas());

    g.finish();
}

criterion_group!(benches, bulkhead, adaptive_limit);
criterion_main!(benches);
