//! The timeout's pass path (the inner service answers at once): a bare service, tower's
//! `Timeout` and palisade's `TimeoutLayer` (fixed, and chosen per request), on one thread and
//! on two threads sharing one layer.
//!
//! tower's `Timeout` creates its `Sleep` in `call`; palisade's registers no timer until the
//! inner future is pending. Each iteration readies the service, calls it and polls the future
//! to completion with a no-op waker, inside a tokio runtime context (tower's sleep needs one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_pass_by_value, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use palisade::timeout::TimeoutLayer;
use tokio::runtime::Handle;
use tower::{service_fn, Layer, Service};

fn bare(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = std::future::Ready<Result<u64, Infallible>>>
       + Clone
       + Send
       + 'static {
    service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

/// One `poll_ready` + `call` + poll of the response future to completion.
#[inline]
fn once<S: Service<u64, Response = u64>>(svc: &mut S, cx: &mut Context<'_>, x: u64) -> u64
where
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => unreachable!("always ready"),
    }
    let fut = pin!(svc.call(x));
    match fut.poll(cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => unreachable!("ready inner service"),
    }
}

fn single<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    g.bench_function(format!("{name}/1-thread"), |b| {
        let mut x = 0u64;
        b.iter(|| {
            x = x.wrapping_add(1);
            black_box(once(&mut svc, &mut cx, black_box(x)))
        });
    });
}

#[allow(clippy::disallowed_methods)]
fn two_threads<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, handle: &Handle, svc: S)
where
    S: Service<u64, Response = u64> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    g.bench_function(format!("{name}/2-threads"), |b| {
        b.iter_custom(|iters| {
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let mut svc = svc.clone();
                        let barrier = &barrier;
                        let handle = handle.clone();
                        scope.spawn(move || {
                            let _rt = handle.enter();
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

fn timeout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("timeout");

    let tower = || tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(bare());
    let palisade = || TimeoutLayer::new(Duration::from_secs(1)).layer(bare());
    let per_request = || {
        TimeoutLayer::builder()
            .per_request(|x: &u64| Some(Duration::from_millis(1000 + (*x & 1))))
            .build()
            .unwrap()
            .layer(bare())
    };

    single(&mut g, "bare", bare());
    single(&mut g, "tower Timeout", tower());
    single(&mut g, "palisade TimeoutLayer", palisade());
    single(&mut g, "palisade TimeoutLayer per request", per_request());

    let handle = rt.handle().clone();
    two_threads(&mut g, "bare", &handle, bare());
    two_threads(&mut g, "tower Timeout", &handle, tower());
    two_threads(&mut g, "palisade TimeoutLayer", &handle, palisade());
    two_threads(&mut g, "palisade TimeoutLayer per request", &handle, per_request());

    g.finish();
}

criterion_group!(benches, timeout);
criterion_main!(benches);
