//! The correctness cases of the other test files, run with the fast clock (`quanta`, mocked
//! and advanced together with tokio's paused clock).
#![cfg(feature = "quanta")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_core::rejection::KeySetFull;
use palisade_core::when_full::WhenFull;
use palisade_rate_limit::{
    Algorithm, Clock, Denied, KeyedRateLimiter, Quota, RateLimitLayer, RateLimiter, Tier,
};
use support::{ms, retry_after, Echo};
use tower::{Layer, Service, ServiceExt};

struct Clocks {
    mock: Arc<quanta::Mock>,
    clock: Clock,
}

impl Clocks {
    fn new() -> Self {
        let (clock, mock) = quanta::Clock::mock();
        mock.increment(Duration::from_secs(1_000)); // an arbitrary origin
        Self { mock, clock: Clock::from_quanta(clock) }
    }

    async fn advance(&self, d: Duration) {
        self.mock.increment(d);
        tokio::time::advance(d).await;
    }
}

const ALL: [Algorithm; 5] = [
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket { queue: 0 },
    Algorithm::SlidingWindowLog,
    Algorithm::SlidingWindowCounter,
    Algorithm::FixedWindow,
];

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_after_is_exact_with_the_fast_clock() {
    for algorithm in ALL {
        let clocks = Clocks::new();
        let limiter = RateLimiter::builder(Quota::new(4, Duration::from_secs(1)))
            .algorithm(algorithm)
            .clock(clocks.clock.clone())
            .build()
            .unwrap();
        let mut refused = 0;
        for step in 0..60u64 {
            clocks.advance(Duration::from_millis(37 * (step % 5) + 3)).await;
            if let Err(Denied::RetryAfter(after)) = limiter.check() {
                clocks.advance(after.checked_sub(Duration::from_nanos(1)).unwrap()).await;
                assert!(limiter.check().is_err(), "{algorithm:?} admitted early");
                clocks.advance(Duration::from_nanos(1)).await;
                assert!(limiter.check().is_ok(), "{algorithm:?} not admitted on time");
                refused += 1;
            }
        }
        assert!(refused > 5, "{algorithm:?}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_kept_key_is_not_forgotten_with_the_fast_clock() {
    let clocks = Clocks::new();
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_second(1).burst(1), |k: &&str| Some(*k)).max_keys(1))
        .when_full(WhenFull::wait(Duration::from_secs(5)))
        .clock(clocks.clock.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    svc.clone().oneshot("a").await.unwrap();
    let waiters: Vec<_> = (0..5).map(|_| tokio::spawn(svc.clone().oneshot("a"))).collect();
    tokio::task::yield_now().await;
    clocks.advance(ms(1_500)).await;
    assert!(svc.clone().oneshot("b").await.unwrap_err().is::<KeySetFull>());
    assert_eq!(handle.status(&"a").unwrap().reset_after, ms(4_500));
    let mut late = tokio_test::task::spawn(svc.clone().oneshot("a"));
    tokio_test::assert_pending!(late.poll());
    clocks.advance(ms(3_500)).await;
    for w in waiters {
        w.await.unwrap().unwrap();
    }
    tokio_test::assert_pending!(late.poll());
    clocks.advance(ms(1_000)).await;
    assert_eq!(tokio_test::assert_ready_ok!(late.poll()), "a");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_reject_mode_and_eviction_with_the_fast_clock() {
    let clocks = Clocks::new();
    let limiter = KeyedRateLimiter::builder()
        .quota(Quota::per_second(1))
        .max_keys(2)
        .clock(clocks.clock.clone())
        .build()
        .unwrap();
    limiter.check_key(&1).unwrap();
    limiter.check_key(&2).unwrap();
    assert_eq!(limiter.check_key(&1), Err(Denied::RetryAfter(ms(1_000))));
    assert_eq!(limiter.check_key(&3), Err(Denied::KeySetFull { capacity: 2 }));
    clocks.advance(ms(1_000)).await;
    limiter.check_key(&3).unwrap();
    assert_eq!(limiter.evictions(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_mode_refuses_at_once_with_the_fast_clock() {
    for (algorithm, fits) in [(Algorithm::FixedWindow, 20), (Algorithm::TokenBucket, 20)] {
        let clocks = Clocks::new();
        let layer = RateLimitLayer::builder()
            .algorithm(algorithm)
            .tier(Tier::new(Quota::per_second(5)).when(|_: &u32| true))
            .when_full(WhenFull::wait(Duration::from_secs(3)))
            .clock(clocks.clock.clone())
            .build()
            .unwrap();
        let mut svc = layer.layer(Echo);
        let mut pending = Vec::new();
        let mut refused = 0;
        for i in 0..200 {
            let mut f = tokio_test::task::spawn(svc.ready().await.unwrap().call(i));
            match f.poll() {
                std::task::Poll::Ready(Ok(_)) => {}
                std::task::Poll::Ready(Err(e)) => {
                    assert!(retry_after(&e) > Duration::ZERO);
                    refused += 1;
                }
                std::task::Poll::Pending => pending.push(f),
            }
        }
        assert_eq!(refused, 200 - fits, "{algorithm:?}");
        clocks.advance(Duration::from_secs(3)).await;
        for mut f in pending {
            assert!(matches!(f.poll(), std::task::Poll::Ready(Ok(_))), "{algorithm:?}");
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_global_fast_path_and_a_quota_change_with_the_fast_clock() {
    let clocks = Clocks::new();
    let layer: RateLimitLayer<u32> =
        RateLimitLayer::builder().quota(Quota::per_second(2)).clock(clocks.clock.clone()).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    svc.clone().oneshot(1).await.unwrap();
    svc.clone().oneshot(2).await.unwrap();
    assert_eq!(retry_after(&svc.clone().oneshot(3).await.unwrap_err()), ms(500));
    clocks.advance(ms(500)).await;
    svc.clone().oneshot(4).await.unwrap();
    handle.set_quota("global", Quota::per_second(4)).unwrap();
    svc.clone().oneshot(5).await.unwrap();
    svc.clone().oneshot(6).await.unwrap();
    assert!(svc.clone().oneshot(7).await.is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stale_reading_never_reopens_a_window_with_the_fast_clock() {
    for algorithm in ALL {
        let clocks = Clocks::new();
        let limiter = RateLimiter::builder(Quota::per_second(10))
            .algorithm(algorithm)
            .clock(clocks.clock.clone())
            .build()
            .unwrap();
        let t0 = tokio::time::Instant::now();
        clocks.advance(ms(2_500)).await;
        let mut admitted = 0;
        for _ in 0..20 {
            admitted += u32::from(limiter.check().is_ok());
        }
        admitted += u32::from(limiter.try_acquire_at(1, t0 + ms(1_900)).is_ok());
        for _ in 0..20 {
            admitted += u32::from(limiter.check().is_ok());
        }
        assert!(admitted <= 10, "{algorithm:?} admitted {admitted}");
    }
}
