//! Resource pools: acquire + release of an idle resource with palisade's `ResourcePool`
//! against deadpool's managed pool, on one thread and with two tasks on two threads
//! contending for 4 resources.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade::resource_pool::{Lifecycle, ResourcePool};

struct Conns;

impl Lifecycle for Conns {
    type Resource = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(7)
    }
}

struct DeadConns;

impl deadpool::managed::Manager for DeadConns {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(7)
    }

    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

/// Acquires and releases per task in the two-thread entries.
const ROUNDS: u64 = 100;

fn resource_pool(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let mut group = c.benchmark_group("resource_pool/1 thread");

    group.bench_function("palisade ResourcePool acquire+release", |b| {
        let pool = ResourcePool::builder(Conns).max_size(4).build().unwrap();
        b.iter(|| rt.block_on(async { *pool.acquire().await.unwrap() }));
    });

    group.bench_function("deadpool managed get+release", |b| {
        let pool = deadpool::managed::Pool::<DeadConns>::builder(DeadConns).max_size(4).build().unwrap();
        b.iter(|| rt.block_on(async { *pool.get().await.unwrap() }));
    });
    group.finish();

    let rt2 =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().expect("runtime");
    let mut group = c.benchmark_group("resource_pool/2 threads");

    group.bench_function("palisade ResourcePool acquire+release", |b| {
        let pool = Arc::new(ResourcePool::builder(Conns).max_size(4).build().unwrap());
        b.iter(|| {
            rt2.block_on(async {
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let pool = pool.clone();
                        tokio::spawn(async move {
                            let mut sum = 0;
                            for _ in 0..ROUNDS {
                                sum += *pool.acquire().await.unwrap();
                            }
                            sum
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
    });

    group.bench_function("deadpool managed get+release", |b| {
        let pool = deadpool::managed::Pool::<DeadConns>::builder(DeadConns).max_size(4).build().unwrap();
        b.iter(|| {
            rt2.block_on(async {
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let pool = pool.clone();
                        tokio::spawn(async move {
                            let mut sum = 0;
                            for _ in 0..ROUNDS {
                                sum += *pool.get().await.unwrap();
                            }
                            sum
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
    });
    group.finish();
}

criterion_group!(benches, resource_pool);
criterion_main!(benches);
