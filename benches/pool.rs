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

/// Calls per task in the two-thread entries.
const ROUNDS: u32 = 100;

/// Two tasks on a two-thread runtime, each sending `ROUNDS` calls through its own clone.
fn two_tasks<Svc>(rt: &tokio::runtime::Runtime, svc: &Svc)
where
    Svc: Service<u64, Response = u64> + Clone + Send + 'static,
    Svc::Error: std::fmt::Debug,
    Svc::Future: Send,
{
    rt.block_on(async {
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    for _ in 0..ROUNDS {
                        svc.ready().await.unwrap().call(1).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn pool_two_threads(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().expect("runtime");
    let mut group = c.benchmark_group("pool/2 threads");

    group.bench_function("tower Buffer + p2c Balance (4 members)", |b| {
        let svc = rt.block_on(async {
            let members: Vec<_> = (0..4).map(|_| Constant::new(noop(), 1)).collect();
            tower::buffer::Buffer::new(Balance::new(ServiceList::new(members)), 64)
        });
        b.iter(|| two_tasks(&rt, &svc));
    });

    group.bench_function("palisade Pool p2c (4 members)", |b| {
        let svc = rt.block_on(async {
            let pool = Pool::builder()
                .min_size(4)
                .max_size(4)
                .member_concurrency(64)
                .strategy(Strategy::PowerOfTwoChoices)
                .build(make_fn(|| async { Ok::<_, Infallible>(noop()) }))
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            pool
        });
        b.iter(|| two_tasks(&rt, &svc));
    });

    group.finish();
}

criterion_group!(benches, pool, pool_two_threads);
criterion_main!(benches);
