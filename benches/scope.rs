//! Scope and hooks on the pass path, side by side with a bare service and the closest tower
//! built-ins (`map_err` into `BoxError`; `ConcurrencyLimit` for a scope with a limit).
//!
//! `cargo bench --no-default-features --features scope --bench scope`
//!
//! Each sample drives many calls inside one `block_on`, so the figures are the cost of one
//! `ready().await` + `call().await`, not of entering the runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::io;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade::scope::hooks::HooksLayer;
use palisade::scope::{Scope, ScopeLayer};
use palisade_core::BoxError;
use tokio::runtime::Runtime;
use tower::limit::ConcurrencyLimitLayer;
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

fn scope(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut group = c.benchmark_group("scope");
    group.bench_function("bare service_fn", |b| {
        let mut svc = inner();
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("tower map_err into BoxError", |b| {
        let mut svc = inner().map_err(BoxError::from);
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("ScopeLayer", |b| {
        let mut svc = ScopeLayer::new(Scope::new("bench")).layer(inner());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("tower ConcurrencyLimit(64)", |b| {
        let mut svc = ConcurrencyLimitLayer::new(64).layer(inner());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("ScopeLayer with limit 64", |b| {
        let scope = Scope::builder("bench").limit(64).build().unwrap();
        let mut svc = ScopeLayer::new(scope).layer(inner());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.bench_function("HooksLayer (request + response hooks)", |b| {
        let mut svc = HooksLayer::new()
            .on_request(|r: &u64| {
                black_box(r);
            })
            .on_response(|r: &Result<u64, io::Error>, d: Duration| {
                black_box((r.is_ok(), d));
            })
            .layer(inner());
        b.iter_custom(|n| run(&rt, &mut svc, n));
    });
    group.finish();
}

criterion_group!(benches, scope);
criterion_main!(benches);
