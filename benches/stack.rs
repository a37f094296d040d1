//! The whole stack on a no-op service against each layer alone, in one run: the full
//! stack's overhead should be no more than the sum of the single layers' overheads.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade::bulkhead::BulkheadLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::fallback::{FallbackContext, FallbackLayer};
use palisade::rate_limit::{Quota, RateLimitLayer};
use palisade::retry::RetryLayer;
use palisade::timeout::TimeoutLayer;
use palisade::BoxError;
use tower::layer::util::Identity;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

fn noop(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = std::future::Ready<Result<u64, Infallible>>>
       + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

fn rate_limit() -> RateLimitLayer<u64> {
    RateLimitLayer::new(Quota::per_second(u32::MAX).burst(u32::MAX))
}

fn bench_one<S>(
    rt: &tokio::runtime::Runtime,
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    svc: S,
) where
    S: Service<u64> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut svc = svc;
    c.bench_function(name, |b| {
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(1).await.unwrap() }));
    });
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("stack");
    bench_one(&rt, &mut g, "bare", Identity::new().layer(noop()));
    bench_one(&rt, &mut g, "rate limit", rate_limit().layer(noop()));
    bench_one(
        &rt,
        &mut g,
        "bulkhead",
        BulkheadLayer::builder()
            .max_concurrent(1024)
            .when_full(palisade_core::WhenFull::wait(Duration::MAX))
            .build()
            .unwrap()
            .layer(noop()),
    );
    bench_one(&rt, &mut g, "circuit breaker", CircuitBreakerLayer::new().layer(noop()));
    bench_one(&rt, &mut g, "retry", RetryLayer::builder().build().unwrap().layer(noop()));
    bench_one(&rt, &mut g, "timeout", TimeoutLayer::new(Duration::from_secs(10)).layer(noop()));
    let fallback = || {
        FallbackLayer::builder()
            .fallback_fn(|_: FallbackContext<u64, u64>| async { Ok::<_, BoxError>(0) })
            .build()
            .unwrap()
    };
    bench_one(&rt, &mut g, "fallback", fallback().layer(noop()));
    let full = ServiceBuilder::new()
        .layer(rate_limit())
        .layer(
            BulkheadLayer::builder()
                .max_concurrent(1024)
                .when_full(palisade_core::WhenFull::wait(Duration::MAX))
                .build()
                .unwrap(),
        )
        .layer(fallback())
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(RetryLayer::builder().build().unwrap())
        .layer(CircuitBreakerLayer::new())
        .service(noop());
    bench_one(&rt, &mut g, "full stack", full);
    g.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
