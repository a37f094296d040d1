//! Fallback and chaos on the pass path (no fallback triggered, nothing injected), side by
//! side with a bare service and the tower built-in equivalents.
//!
//! `cargo bench --no-default-features --features fallback,chaos --bench fallback`
//!
//! Each sample drives many calls inside one `block_on`, so the figures are the cost of one
//! `ready().await` + `call().await`, not of entering the runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::io;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade::fallback::{FallbackContext, FallbackLayer};
use palisade_core::BoxError;
use tokio::runtime::Runtime;
use tower::util::Either;
use tower::{service_fn, Layer, Service, ServiceExt};

fn inner() -> impl Service<u64, Response = u64, Error = io::Error, Future: Send> + Clone {
    service_fn(|x: u64| async move { Ok::<_, io::Error>(x) })
}

fn run<S>(rt: &Runtime, svc: &mut S, iters: u64) -> Duration
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = tokio::time::Instant::now();
        for i in 0..iters {
            let res = svc.ready().await.unwrap().call(black_box(i)).await.unwrap();
            black_box(res);
        }
        start.elapsed()
    })
}

fn fallback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut group = c.benchmark_group("fallback");

    group.bench_function("bare service_fn", |b| {
        let mut svc = inner();
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("tower map_err into BoxError", |b| {
        let mut svc = inner().map_err(BoxError::from);
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("tower then (hand-rolled fallback)", |b| {
        let mut svc = inner().then(|res: Result<u64, io::Error>| async move {
            match res {
                Ok(v) => Ok::<_, BoxError>(v),
                Err(_) => Ok(0),
            }
        });
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("palisade FallbackLayer fn", |b| {
        let layer = FallbackLayer::builder()
            .fallback_fn(|_: FallbackContext<u64, u64>| async { Ok::<_, BoxError>(0) })
            .build()
            .unwrap();
        let mut svc = layer.layer(inner());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("palisade FallbackLayer service", |b| {
        let layer = FallbackLayer::builder().fallback_service(inner()).build().unwrap();
        let mut svc = layer.layer(inner());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });

    // The fallback path: the inner service fails every call.
    let failing = || service_fn(|_: u64| async { Err::<u64, _>(io::Error::other("down")) });
    group.bench_function("tower then, error answered by fallback", |b| {
        let mut svc = failing().then(|res: Result<u64, io::Error>| async move {
            match res {
                Ok(v) => Ok::<_, BoxError>(v),
                Err(_) => Ok(0),
            }
        });
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("palisade FallbackLayer fn, error answered by fallback", |b| {
        let layer = FallbackLayer::builder()
            .fallback_fn(|_: FallbackContext<u64, u64>| async { Ok::<_, BoxError>(0) })
            .build()
            .unwrap();
        let mut svc = layer.layer(failing());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });

    group.bench_function("tower Either::Left (switch off)", |b| {
        let mut svc = Either::<_, tower::util::BoxCloneService<u64, u64, io::Error>>::Left(inner());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    #[cfg(feature = "chaos")]
    {
        use palisade::chaos::ChaosLayer;
        group.bench_function("palisade ChaosLayer rates 0", |b| {
            let layer = ChaosLayer::builder().seed(1).build().unwrap();
            let mut svc = layer.layer(inner());
            b.iter_custom(|n| run(&rt, &mut svc, n));
        });
        group.bench_function("palisade ChaosLayer disabled", |b| {
            let layer = ChaosLayer::builder().seed(1).enabled(false).fault_rate(0.5).build().unwrap();
            let mut svc = layer.layer(inner());
            b.iter_custom(|n| run(&rt, &mut svc, n));
        });
    }
    group.finish();
}

criterion_group!(benches, fallback);
criterion_main!(benches);
