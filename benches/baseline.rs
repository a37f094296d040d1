//! Baseline: a bare `service_fn` against the same service behind an empty `ServiceBuilder`.
#![allow(missing_docs, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::convert::Infallible;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

fn baseline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut group = c.benchmark_group("baseline");
    group.bench_function("bare service_fn", |b| {
        let mut svc = service_fn(|x: u64| async move { Ok::<_, Infallible>(x) });
        b.iter(|| rt.block_on(async { svc.ready().await.expect("ready").call(1).await }));
    });
    group.bench_function("empty ServiceBuilder", |b| {
        let mut svc =
            ServiceBuilder::new().service(service_fn(|x: u64| async move { Ok::<_, Infallible>(x) }));
        b.iter(|| rt.block_on(async { svc.ready().await.expect("ready").call(1).await }));
    });
    group.finish();
}

criterion_group!(benches, baseline);
criterion_main!(benches);
