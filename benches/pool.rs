//! Pools: a pool of 4 no-op members (palisade `Pool`) against tower's p2c `Balance`
//! over the same members and a single bare service. The resource pool's bench is
//! `benches/resource_pool.rs`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade::pool::{make_fn, Pool, Strategy};
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::Constant;
use tower::{service_fn, Service, ServiceExt};

fn noop(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = std::future::Ready<Result<u64, Infallible>>>
       + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

fn pool(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let mut group = c.benchmark_group("pool");

    group.bench_function("bare service", |b| {
        let mut svc = noop();
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(1).await }));
    });

    group.bench_function("tower p2c Balance (4 members)", |b| {
        let members: Vec<_> = (0..4).map(|_| Constant::new(noop(), 1)).collect();
        let mut svc = Balance::new(ServiceList::new(members));
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(1).await }));
    });

    group.bench_function("tower Buffer + p2c Balance (4 members)", |b| {
        let mut svc = rt.block_on(async {
            let members: Vec<_> = (0..4).map(|_| Constant::new(noop(), 1)).collect();
            tower::buffer::Buffer::new(Balance::new(ServiceList::new(members)), 64)
        });
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(1).await.unwrap() }));
    });

    for (label, strategy) in [
        ("palisade Pool round-robin (4 members)", Strategy::RoundRobin),
        ("palisade Pool p2c (4 members)", Strategy::PowerOfTwoChoices),
    ] {
        group.bench_function(label, |b| {
            let mut svc = rt.block_on(async {
                let pool = Pool::builder()
                    .min_size(4)
                    .max_size(4)
                    .member_concurrency(64)
                    .strategy(strategy)
                    .build(make_fn(|| async { Ok::<_, Infallible>(noop()) }))
                    .unwrap();
                tokio::task::yield_now().await;
                pool
            });
            b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(1).await.unwrap() }));
        });
    }

    group.finish();
}

criterion_group!(benches, pool);
criterion_main!(benches);
