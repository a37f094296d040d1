//! Circuit breaker, closed-state pass path on a no-op service: bare service vs palisade vs
//! tower-resilience-circuitbreaker vs failsafe, on one thread and with two threads hammering
//! one shared breaker. tower has no circuit breaker of its own.
//!
//! Each sample runs `iters` calls in one `block_on` so the runtime's entry cost does not
//! drown the layer's. The two-thread cases run `iters` calls on each of two threads (one
//! current-thread runtime each) through clones of one service, and report the wall time:
//! time per iteration is the time for two concurrent calls through the same breaker.
//!
//! `cargo bench --no-default-features --features circuit-breaker --bench circuit_breaker`
//!
//! Goals (issue 14.6): every palisade mode at most 0.5x failsafe on two threads and at most
//! 25 ns over bare on one. The time window reads the clock once per call; the `quanta clock`
//! entries show it on the time-stamp counter.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::disallowed_methods)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use failsafe::futures::CircuitBreaker as _;
use palisade::circuit_breaker::CircuitBreakerLayer;
use tower::{service_fn, Layer, Service, ServiceExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

fn noop() -> impl Service<
    u64,
    Response = u64,
    Error = Infallible,
    Future = impl Future<Output = Result<u64, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    service_fn(|x: u64| async move { Ok::<_, Infallible>(x) })
}

/// `iters` calls through `svc` on the current thread.
async fn drive<S>(svc: &mut S, iters: u64) -> Duration
where
    S: Service<u64>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for i in 0..iters {
        let ready = svc.ready().await.unwrap();
        black_box(ready.call(black_box(i)).await.unwrap());
    }
    start.elapsed()
}

/// `iters` calls on each of two threads, through clones of `svc`; the wall time.
fn drive_two<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = svc.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                barrier.wait();
                rt.block_on(drive(&mut svc, iters))
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

/// failsafe is not a tower layer: its future-aware breaker wraps each call's future.
async fn drive_failsafe<P>(cb: &failsafe::StateMachine<P, ()>, iters: u64) -> Duration
where
    P: failsafe::FailurePolicy + Send + Sync,
{
    let start = Instant::now();
    for i in 0..iters {
        black_box(cb.call(async move { Ok::<_, ()>(black_box(i)) }).await.unwrap());
    }
    start.elapsed()
}

fn palisade_consecutive() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder().consecutive_failures(5).build().unwrap()
}

/// Resilience4j's defaults: failure rate 50 % over a count window of 100.
fn palisade_count_window() -> CircuitBreakerLayer {
    CircuitBreakerLayer::new()
}

fn palisade_time_window() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder().failure_rate(0.5).time_window(Duration::from_secs(60)).build().unwrap()
}

/// The time window on the CPU's time-stamp counter (feature `quanta`) instead of tokio's clock.
fn palisade_time_window_quanta() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .time_window(Duration::from_secs(60))
        .clock(palisade_circuit_breaker::Clock::quanta())
        .build()
        .unwrap()
}

fn tower_resilience<S>(
    inner: S,
) -> tower_resilience_circuitbreaker::CircuitBreaker<S, tower_resilience_circuitbreaker::DefaultClassifier> {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .unwrap()
        .layer(inner)
}

fn failsafe_breaker() -> failsafe::StateMachine<impl failsafe::FailurePolicy + Send + Sync + 'static, ()> {
    failsafe::Config::new().build()
}

fn circuit_breaker(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("circuit_breaker");

    // One thread.
    group.bench_function("1 thread/bare", |b| {
        let mut svc = noop();
        b.iter_custom(|iters| rt.block_on(drive(&mut svc, iters)));
    });
    group.bench_function("1 thread/palisade consecutive", |b| {
        let mut svc = palisade_consecutive().layer(noop());
        b.iter_custom(|iters| rt.block_on(drive(&mut svc, iters)));
    });
    group.bench_function("1 thread/palisade count window", |b| {
        let mut svc = palisade_count_window().layer(noop());
        b.iter_custom(|iters| rt.block_on(drive(&mut svc, iters)));
    });
    group.bench_function("1 thread/palisade time window", |b| {
        let mut svc = palisade_time_window().layer(noop());
        b.iter_custom(|iters| rt.block_on(drive(&mut svc, iters)));
    });
    group.bench_function("1 thread/palisade time window, quanta clock", |b| {
        let mut svc = palisade_time_window_quanta().layer(noop());
        b.iter_custom(|iters| rt.block_on(drive(&mut svc, iters)));
    });
    group.bench_function("1 thread/tower-resilience", |b| {
        let mut svc = tower_resilience(noop());
        b.iter_custom(|iters| rt.block_on(drive(&mut svc, iters)));
    });
    group.bench_function("1 thread/failsafe", |b| {
        let cb = failsafe_breaker();
        b.iter_custom(|iters| rt.block_on(drive_failsafe(&cb, iters)));
    });

    // Two threads, one shared breaker.
    group.bench_function("2 threads/bare", |b| {
        let svc = noop();
        b.iter_custom(|iters| drive_two(&svc, iters));
    });
    group.bench_function("2 threads/palisade consecutive", |b| {
        let svc = palisade_consecutive().layer(noop());
        b.iter_custom(|iters| drive_two(&svc, iters));
    });
    group.bench_function("2 threads/palisade count window", |b| {
        let svc = palisade_count_window().layer(noop());
        b.iter_custom(|iters| drive_two(&svc, iters));
    });
    group.bench_function("2 threads/palisade time window", |b| {
        let svc = palisade_time_window().layer(noop());
        b.iter_custom(|iters| drive_two(&svc, iters));
    });
    group.bench_function("2 threads/palisade time window, quanta clock", |b| {
        let svc = palisade_time_window_quanta().layer(noop());
        b.iter_custom(|iters| drive_two(&svc, iters));
    });
    group.bench_function("2 threads/tower-resilience", |b| {
        let svc = tower_resilience(noop());
        b.iter_custom(|iters| drive_two(&svc, iters));
    });
    group.bench_function("2 threads/failsafe", |b| {
        let cb = failsafe_breaker();
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(3));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let cb = cb.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let rt = runtime();
                        barrier.wait();
                        rt.block_on(drive_failsafe(&cb, iters))
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            for t in threads {
                t.join().unwrap();
            }
            start.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, circuit_breaker);
criterion_main!(benches);
