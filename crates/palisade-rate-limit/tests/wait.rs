//! The numbers a client sees are exact, and wait mode refuses at once what cannot be
//! admitted within `max_wait` (issue 13.4).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use palisade_core::when_full::WhenFull;
use palisade_rate_limit::error::CostExceedsCapacity;
use palisade_rate_limit::{Algorithm, Denied, Quota, RateLimitLayer, RateLimiter, Tier};
use support::{advance, ms, retry_after, Echo};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};

/// Issue 13.4: a leaky bucket with 50 places, one leaving every 20 ms. With the queue full,
/// the next request is told 20 ms (not 1 s), and sent 20 ms later it is accepted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_leaky_bucket_reports_the_time_until_a_place_frees() {
    let limiter = RateLimiter::new(Algorithm::LeakyBucket { queue: 50 }, Quota::per_second(50)).unwrap();
    let mut admitted = 0;
    while limiter.reserve(1, Duration::from_secs(10)).is_ok() {
        admitted += 1;
    }
    assert_eq!(admitted, 51, "one leaving now and 50 places");
    assert_eq!(limiter.reserve(1, Duration::from_secs(10)), Err(Denied::RetryAfter(ms(20))));
    advance(ms(19)).await;
    assert_eq!(limiter.reserve(1, Duration::from_secs(10)), Err(Denied::RetryAfter(ms(1))));
    advance(ms(1)).await;
    let at = limiter.reserve(1, Duration::from_secs(10)).unwrap();
    assert_eq!(at - tokio::time::Instant::now(), ms(1_000), "it takes the last place");
}

/// The same through the layer: the refusal's `retry_after` is exact.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_leaky_layer_refusal_is_exact() {
    let layer = RateLimitLayer::builder()
        .algorithm(Algorithm::LeakyBucket { queue: 50 })
        .tier(Tier::new(Quota::per_second(50)).when(|_: &u32| true))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    let mut waiting = Vec::new();
    for i in 0..51 {
        let mut f = spawn(svc.ready().await.unwrap().call(i));
        if i > 0 {
            assert_pending!(f.poll());
        }
        waiting.push(f);
    }
    let err = svc.ready().await.unwrap().call(51).await.unwrap_err();
    assert_eq!(retry_after(&err), ms(20));
    advance(ms(20)).await;
    let mut late = spawn(svc.ready().await.unwrap().call(52));
    assert_pending!(late.poll(), "accepted into the queue");
    advance(ms(1_000)).await;
    assert_eq!(assert_ready_ok!(late.poll()), 52);
}

/// `check()` / `try_acquire()` on a leaky bucket admit only what may leave now (they never
/// take a queue place a caller could not wait for); `reserve` queues.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_direct_leaky_check_admits_only_what_leaves_now() {
    let limiter = RateLimiter::new(Algorithm::LeakyBucket { queue: 5 }, Quota::per_second(10)).unwrap();
    assert!(limiter.check().is_ok());
    assert_eq!(limiter.check(), Err(Denied::RetryAfter(ms(100))));
    let at = limiter.reserve(1, Duration::from_secs(1)).unwrap();
    assert_eq!(at - tokio::time::Instant::now(), ms(100));
    assert_eq!(limiter.status().queued, 1);
}

/// Issue 13.4: `per_second(5)`, `wait(3 s)`, 200 callers at t=0. Those that fit within
/// 3 s are admitted (and run at their slots); every other one is refused at t=0, for every
/// algorithm.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_mode_refuses_at_once_whoever_cannot_fit_in_max_wait() {
    for (algorithm, fits) in [
        (Algorithm::FixedWindow, 20),                // 5 in each of windows 0, 1, 2, 3
        (Algorithm::TokenBucket, 20),                // burst 5 + one per 200 ms up to 3 s
        (Algorithm::SlidingWindowLog, 20),           // 5 per window, the window slides on whole seconds
        (Algorithm::SlidingWindowCounter, 14),       // 5, then 4 + 4 as the previous window weighs, then 1
        (Algorithm::LeakyBucket { queue: 100 }, 16), // one per 200 ms, 0 … 3 s
    ] {
        let layer = RateLimitLayer::builder()
            .algorithm(algorithm)
            .tier(Tier::new(Quota::per_second(5)).when(|_: &u32| true))
            .when_full(WhenFull::wait(Duration::from_secs(3)))
            .build()
            .unwrap();
        let mut svc = layer.layer(Echo);
        let start = tokio::time::Instant::now();
        let mut pending = Vec::new();
        let mut refused = 0;
        let mut at_once = 0;
        for i in 0..200 {
            let mut f = spawn(svc.ready().await.unwrap().call(i));
            match f.poll() {
                std::task::Poll::Ready(Ok(_)) => at_once += 1,
                std::task::Poll::Ready(Err(e)) => {
                    // The time until the same request would be admitted (to wait its 3 s).
                    assert!(retry_after(&e) > Duration::ZERO, "{algorithm:?}");
                    refused += 1;
                }
                std::task::Poll::Pending => pending.push(f),
            }
        }
        assert_eq!(at_once + pending.len(), fits, "{algorithm:?}");
        assert_eq!(refused, 200 - fits, "{algorithm:?}: refused at t=0");
        advance(Duration::from_secs(3)).await;
        for mut f in pending {
            assert!(f.is_woken() || f.poll().is_ready(), "{algorithm:?}");
            assert!(matches!(f.poll(), std::task::Poll::Ready(Ok(_))), "{algorithm:?}: admitted in time");
        }
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}

/// The same through `poll_ready` (a global limit admits there): refused services are ready
/// at once and their `call` answers the refusal.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_mode_refuses_at_once_in_poll_ready_too() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder()
        .algorithm(Algorithm::FixedWindow)
        .quota(Quota::per_second(5))
        .when_full(WhenFull::wait(Duration::from_secs(3)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let mut ready_now = 0;
    let mut held = Vec::new(); // every service keeps its reservation
    for _ in 0..200 {
        let mut s = svc.clone();
        let mut task = spawn(());
        let ready = task.enter(|cx, _| s.poll_ready(cx)).is_ready();
        ready_now += usize::from(ready);
        held.push((s, task, ready));
    }
    assert_eq!(ready_now, 5 + 180, "5 admitted now and 180 refused at once");
    let mut refused = 0;
    for (s, _, _) in held.iter_mut().filter(|h| h.2) {
        if let Some(Err(e)) = futures_util::FutureExt::now_or_never(s.call(0)) {
            // Admitted if it comes back 1 s from now (and waits the 3 s).
            assert_eq!(retry_after(&e), Duration::from_secs(1));
            refused += 1;
        }
    }
    assert_eq!(refused, 180);
}

/// A weighted request above the burst in wait mode: as governor (`InsufficientCapacity`),
/// not as Resilience4j (which reserves across several cycles) — refused at once with
/// `CostExceedsCapacity`, whatever `max_wait`: the burst is the most a limit lets through
/// at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_weight_above_the_burst_is_refused_at_once_in_wait_mode() {
    for algorithm in [Algorithm::TokenBucket, Algorithm::FixedWindow, Algorithm::SlidingWindowCounter] {
        let layer = RateLimitLayer::builder()
            .algorithm(algorithm)
            .quota(Quota::per_second(5))
            .weight(|n: &u32| *n)
            .when_full(WhenFull::wait(Duration::from_secs(60)))
            .build()
            .unwrap();
        let svc = layer.layer(Echo);
        let err = svc.clone().oneshot(6).await.unwrap_err();
        let e = err.downcast_ref::<CostExceedsCapacity>().unwrap();
        assert_eq!((e.cost(), e.capacity()), (6, 5), "{algorithm:?}");
        assert_eq!(svc.clone().oneshot(5).await.unwrap(), 5, "{algorithm:?}: the burst itself fits");
    }
}
