//! Rate limit pass path (the limit is never reached): the limiter's own check — palisade's
//! GCRA vs governor, direct and keyed — and the same through a tower service: bare service,
//! tower's `RateLimit`, palisade's `RateLimitLayer` (global and keyed) and
//! tower-resilience's rate limiter. One thread, and two threads sharing one limiter.
//! palisade's entries run with both clocks: tokio's (the default, `…/palisade-gcra`) and
//! quanta's TSC clock (`…-quanta`), which governor also reads.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use palisade_rate_limit::{Clock, KeyedRateLimiter, Quota, RateLimitLayer, RateLimiter};
use tower::limit::RateLimitLayer as TowerRateLimitLayer;
use tower::{service_fn, Layer, Service};

/// Keys cycled through by the keyed benches.
const KEYS: u64 = 1_024;

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

fn single(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut op: impl FnMut(u64)) {
    g.bench_function(format!("{name}/1-thread"), |b| {
        let mut x = 0u64;
        b.iter(|| {
            x = x.wrapping_add(1);
            op(black_box(x));
        });
    });
}

/// Both threads run `iters` operations on one shared limiter; the time is the slower one's.
#[allow(clippy::disallowed_methods)] // criterion measures wall time
fn two_threads<F>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, make: impl Fn() -> F)
where
    F: FnMut(u64) + Send,
{
    g.bench_function(format!("{name}/2-threads"), |b| {
        b.iter_custom(|iters| {
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let mut op = make();
                        let barrier = &barrier;
                        scope.spawn(move || {
                            barrier.wait();
                            let start = std::time::Instant::now();
                            for x in 0..iters {
                                op(black_box(x));
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

fn service_op<S>(svc: S) -> impl FnMut(u64) + Send
where
    S: Service<u64, Response = u64> + Send,
    S::Error: std::fmt::Debug,
{
    let mut svc = svc;
    move |x| {
        let mut cx = Context::from_waker(Waker::noop());
        black_box(once(&mut svc, &mut cx, x));
    }
}

fn rate_limit(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit");

    // A quota never reached at these speeds.
    let quota = Quota::per_second(u32::MAX);
    let gov_quota = governor::Quota::per_second(NonZeroU32::MAX);

    // tower's RateLimit and tower-resilience create timers, so they are built inside a
    // runtime; the benches then run outside it, where `tokio::time::Instant::now()` is the
    // production `std::time::Instant::now()` (inside a runtime, tokio's test-util feature —
    // on in dev builds — adds a mutex to every clock read).
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let runtime = rt.enter();
    let tower_svc = TowerRateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(bare());
    let (resilience_layer, _handle) = tower_resilience_ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(usize::MAX / 4)
        .refresh_period(Duration::from_secs(1))
        .build_with_handle()
        .unwrap();
    let resilience_svc = resilience_layer.layer(bare());
    drop(runtime);

    // The clock read every check pays (tokio's Instant is std's; governor reads the TSC
    // through quanta).
    single(&mut g, "clock/tokio-instant-now", |_| {
        black_box(tokio::time::Instant::now());
    });
    let quanta_clock = quanta::Clock::new();
    single(&mut g, "clock/quanta-now", |_| {
        black_box(quanta_clock.now());
    });

    // --- the limiter's check, clock included ---
    let palisade = RateLimiter::token_bucket(quota).unwrap();
    let governor_direct = Arc::new(governor::RateLimiter::direct(gov_quota));
    let palisade_keyed =
        KeyedRateLimiter::builder().quota(quota).max_keys(4 * KEYS as usize).build().unwrap();
    let governor_keyed = Arc::new(governor::RateLimiter::keyed(gov_quota));

    let palisade_q = RateLimiter::builder(quota).clock(Clock::quanta()).build().unwrap();
    let palisade_keyed_q = KeyedRateLimiter::builder()
        .quota(quota)
        .max_keys(4 * KEYS as usize)
        .clock(Clock::quanta())
        .build()
        .unwrap();

    single(&mut g, "check/palisade-gcra", |_| black_box(palisade.check()).unwrap());
    single(&mut g, "check/palisade-gcra-quanta", |_| black_box(palisade_q.check()).unwrap());
    single(&mut g, "check/governor-direct", |_| black_box(governor_direct.check()).unwrap());
    single(&mut g, "check-key/palisade-gcra", |x| black_box(palisade_keyed.check_key(&(x % KEYS))).unwrap());
    single(&mut g, "check-key/palisade-gcra-quanta", |x| {
        black_box(palisade_keyed_q.check_key(&(x % KEYS))).unwrap();
    });
    single(&mut g, "check-key/governor-keyed", |x| black_box(governor_keyed.check_key(&(x % KEYS))).unwrap());

    // --- the algorithm alone: the time is given (palisade) or a fake clock (governor) ---
    let palisade_at = RateLimiter::token_bucket(quota).unwrap();
    let now = tokio::time::Instant::now();
    let governor_fake = Arc::new(governor::RateLimiter::direct_with_clock(
        gov_quota,
        governor::clock::FakeRelativeClock::default(),
    ));
    single(&mut g, "check-at/palisade-gcra", |_| black_box(palisade_at.try_acquire_at(1, now)).unwrap());
    single(&mut g, "check-at/governor-fake-clock", |_| black_box(governor_fake.check()).unwrap());

    two_threads(&mut g, "check/palisade-gcra", || {
        let l = palisade.clone();
        move |_| black_box(l.check()).unwrap()
    });
    two_threads(&mut g, "check/palisade-gcra-quanta", || {
        let l = palisade_q.clone();
        move |_| black_box(l.check()).unwrap()
    });
    two_threads(&mut g, "check/governor-direct", || {
        let l = governor_direct.clone();
        move |_| black_box(l.check()).unwrap()
    });
    two_threads(&mut g, "check-at/palisade-gcra", || {
        let l = palisade_at.clone();
        move |_| black_box(l.try_acquire_at(1, now)).unwrap()
    });
    two_threads(&mut g, "check-at/governor-fake-clock", || {
        let l = governor_fake.clone();
        move |_| black_box(l.check()).unwrap()
    });
    two_threads(&mut g, "check-key/palisade-gcra", || {
        let l = palisade_keyed.clone();
        move |x| black_box(l.check_key(&(x % KEYS))).unwrap()
    });
    two_threads(&mut g, "check-key/palisade-gcra-quanta", || {
        let l = palisade_keyed_q.clone();
        move |x| black_box(l.check_key(&(x % KEYS))).unwrap()
    });
    two_threads(&mut g, "check-key/governor-keyed", || {
        let l = governor_keyed.clone();
        move |x| black_box(l.check_key(&(x % KEYS))).unwrap()
    });

    // --- through a tower service ---
    let palisade_layer = RateLimitLayer::new(quota);
    let palisade_keyed_layer =
        RateLimitLayer::builder().quota(quota).keyed(|x: &u64| Some(*x % KEYS)).build().unwrap();
    let palisade_layer_q = RateLimitLayer::builder().quota(quota).clock(Clock::quanta()).build().unwrap();
    let palisade_keyed_layer_q = RateLimitLayer::builder()
        .quota(quota)
        .keyed(|x: &u64| Some(*x % KEYS))
        .clock(Clock::quanta())
        .build()
        .unwrap();

    {
        let l = RateLimiter::token_bucket(quota).unwrap();
        // The floor: the limiter's check, then the bare service.
        let mut inner = bare();
        single(&mut g, "service/check-then-call", move |x| {
            let mut cx = Context::from_waker(Waker::noop());
            l.check().unwrap();
            black_box(once(&mut inner, &mut cx, x));
        });
    }
    single(&mut g, "service/bare", service_op(bare()));
    single(&mut g, "service/tower-rate-limit", service_op(tower_svc));
    single(&mut g, "service/palisade", service_op(palisade_layer.layer(bare())));
    single(&mut g, "service/palisade-keyed", service_op(palisade_keyed_layer.layer(bare())));
    single(&mut g, "service/palisade-quanta", service_op(palisade_layer_q.layer(bare())));
    single(&mut g, "service/palisade-keyed-quanta", service_op(palisade_keyed_layer_q.layer(bare())));
    single(&mut g, "service/tower-resilience", service_op(resilience_svc.clone()));

    // Two threads on one limiter. tower's RateLimit cannot share one: each clone has its own.
    two_threads(&mut g, "service/bare", || service_op(bare()));
    two_threads(&mut g, "service/palisade", || service_op(palisade_layer.layer(bare())));
    two_threads(&mut g, "service/palisade-keyed", || service_op(palisade_keyed_layer.layer(bare())));
    two_threads(&mut g, "service/palisade-quanta", || service_op(palisade_layer_q.layer(bare())));
    two_threads(&mut g, "service/palisade-keyed-quanta", || service_op(palisade_keyed_layer_q.layer(bare())));
    two_threads(&mut g, "service/tower-resilience", || service_op(resilience_svc.clone()));

    g.finish();
}

criterion_group!(benches, rate_limit);
criterion_main!(benches);
