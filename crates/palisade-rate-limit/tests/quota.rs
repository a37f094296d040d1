//! Quotas change at run time through the handle, atomically, without losing what was
//! admitted (issue 13.5).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::when_full::WhenFull;
use palisade_rate_limit::{Algorithm, Denied, KeyedRateLimiter, Quota, RateLimitLayer, RateLimiter, Tier};
use support::{advance, ms, Echo};
use tower::{Layer, Service, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_handle_raises_a_global_quota_at_once() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder().quota(Quota::per_second(2)).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(1).await.is_ok());
    assert!(svc.clone().oneshot(2).await.is_ok());
    assert!(svc.clone().oneshot(3).await.is_err());
    handle.set_quota("global", Quota::per_second(10)).unwrap();
    // Two of ten tokens are in use: eight more now.
    for i in 0..8 {
        assert!(svc.clone().oneshot(i).await.is_ok(), "request {i}");
    }
    assert!(svc.clone().oneshot(9).await.is_err());
    assert_eq!(handle.tier("global").unwrap().status().unwrap().capacity, 10);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_lower_window_limit_admits_nothing_more_until_below_it() {
    let limiter = RateLimiter::new(Algorithm::FixedWindow, Quota::per_second(10)).unwrap();
    for _ in 0..8 {
        limiter.check().unwrap();
    }
    limiter.set_quota(Quota::per_second(5)).unwrap();
    assert_eq!(limiter.check(), Err(Denied::RetryAfter(ms(1_000))), "8 used of 5");
    assert_eq!(limiter.quota(), Quota::per_second(5));
    advance(ms(1_000)).await;
    for _ in 0..5 {
        limiter.check().unwrap();
    }
    assert!(limiter.check().is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_algorithm_takes_a_new_quota() {
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::FixedWindow,
    ] {
        let limiter = RateLimiter::new(algorithm, Quota::per_second(1)).unwrap();
        limiter.check().unwrap();
        assert!(limiter.check().is_err(), "{algorithm:?}");
        limiter.set_quota(Quota::per_second(3)).unwrap();
        assert!(limiter.check().is_ok(), "{algorithm:?}");
        assert!(limiter.check().is_ok(), "{algorithm:?}");
        assert!(limiter.check().is_err(), "{algorithm:?}: 3 in use");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_keep_their_slots_across_a_change() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::new(Quota::per_second(10).burst(1)).when(|_: &u32| true))
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    assert!(svc.call(0).now_or_never().unwrap().is_ok());
    let mut waiting = tokio_test::task::spawn(svc.call(1)); // slot at 100 ms
    tokio_test::assert_pending!(waiting.poll());
    handle.set_quota("global", Quota::per_second(1).burst(1)).unwrap();
    advance(ms(100)).await;
    assert_eq!(tokio_test::assert_ready_ok!(waiting.poll()), 1, "kept its slot");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_keyed_quota_changes_for_held_and_new_keys() {
    let limiter = KeyedRateLimiter::builder().quota(Quota::per_minute(1)).build().unwrap();
    limiter.check_key(&"a").unwrap();
    assert!(limiter.check_key(&"a").is_err());
    limiter.set_quota(Quota::per_minute(3)).unwrap();
    assert!(limiter.check_key(&"a").is_ok());
    assert!(limiter.check_key(&"a").is_ok());
    assert!(limiter.check_key(&"a").is_err());
    for _ in 0..3 {
        limiter.check_key(&"b").unwrap();
    }
    assert!(limiter.check_key(&"b").is_err());
    // Through a layer's handle, by tier name.
    let layer =
        RateLimitLayer::builder().quota(Quota::per_minute(1)).keyed(|r: &u32| Some(*r)).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    svc.clone().oneshot(7).await.unwrap();
    handle.set_quota("per_key", Quota::per_minute(2)).unwrap();
    svc.clone().oneshot(7).await.unwrap();
    assert!(svc.clone().oneshot(7).await.is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_bad_change_is_refused_and_changes_nothing() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder().quota(Quota::per_second(2)).build().unwrap();
    let handle = layer.handle();
    assert_eq!(handle.set_quota("global", Quota::per_second(0)).unwrap_err().field(), "quota");
    assert_eq!(handle.set_quota("nope", Quota::per_second(1)).unwrap_err().field(), "tier");
    assert_eq!(handle.tier("global").unwrap().status().unwrap().capacity, 2);
}

/// Quotas flip between 5 and 50 per 50 ms window while 3 tasks check: every decision uses
/// one quota or the other and a flip gives back nothing a lower quota took, so no more pass
/// than the larger quota allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_under_load_never_exceed_the_larger_quota() {
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindowCounter,
        Algorithm::SlidingWindowLog,
        Algorithm::TokenBucket,
    ] {
        let period = Duration::from_millis(50);
        let limiter = RateLimiter::new(algorithm, Quota::new(5, period)).unwrap();
        let passed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = tokio::time::Instant::now();
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (limiter, passed, stop) = (limiter.clone(), passed.clone(), stop.clone());
                tokio::spawn(async move {
                    for i in 0..20_000u32 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if limiter.check().is_ok() {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for i in 0..2_000u32 {
            let limit = if i % 2 == 0 { 50 } else { 5 };
            limiter.set_quota(Quota::new(limit, period)).unwrap();
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let elapsed = start.elapsed();
        let windows = (elapsed.as_nanos() / period.as_nanos()) as u64 + 1;
        let bound = match algorithm {
            // A full burst of 50, then one per millisecond at the faster rate.
            Algorithm::TokenBucket => 50 + elapsed.as_millis() as u64 + 1,
            _ => 50 * windows,
        };
        let passed = passed.load(Ordering::Relaxed);
        assert!(passed <= bound, "{algorithm:?}: {passed} passed in {elapsed:?}, bound {bound}");
    }
}

/// Review (issue 13.5, more of the kind): a quota lowered while waiters hold slots in
/// future windows (or future bucket slots) neither admits a newcomer ahead of them nor
/// double-books a slot, and raising it again gives room only in the windows that have it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_change_while_waiters_are_booked_never_double_books() {
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::TokenBucket,
    ] {
        let limiter = RateLimiter::new(algorithm, Quota::per_second(5)).unwrap();
        let t0 = tokio::time::Instant::now();
        let wait = Duration::from_secs(3);
        let mut slots = Vec::new();
        while let Ok(at) = limiter.reserve(1, wait) {
            slots.push(at);
            assert!(slots.len() <= 100, "{algorithm:?} books for ever");
        }
        let booked = slots.len();
        limiter.set_quota(Quota::per_second(2)).unwrap();
        let lowered = limiter.reserve(1, wait);
        assert!(lowered.is_err(), "{algorithm:?}: a newcomer went ahead of {booked} booked: {lowered:?}");
        limiter.set_quota(Quota::per_second(10)).unwrap();
        while let Ok(at) = limiter.reserve(1, wait) {
            slots.push(at);
            assert!(slots.len() <= 200, "{algorithm:?} books for ever");
        }
        // No second of time holds more than the largest quota (10), counted per window
        // for the window algorithms and over any sliding second for all.
        slots.sort();
        for (i, &a) in slots.iter().enumerate() {
            let in_second = slots[i..].iter().take_while(|&&b| b < a + Duration::from_secs(1)).count();
            let bound = match algorithm {
                // A window may admit its limit on each side of a boundary; a token bucket
                // its burst (10) and then its rate (10 more within the second).
                Algorithm::FixedWindow | Algorithm::SlidingWindowCounter | Algorithm::TokenBucket => 20,
                _ => 10,
            };
            assert!(in_second <= bound, "{algorithm:?}: {in_second} within 1 s from {:?}", a - t0);
        }
        for w in 0..5u64 {
            let from = t0 + Duration::from_secs(w);
            let n = slots.iter().filter(|&&a| a >= from && a < from + Duration::from_secs(1)).count();
            if matches!(algorithm, Algorithm::FixedWindow) {
                assert!(n <= 10, "{algorithm:?}: window {w} holds {n}");
            }
        }
    }
}

/// Review: fixed window `per_second(5)`, 8 callers booked (5 now, 3 in the next window),
/// the limit raised to 10: each window gets exactly 5 more places (10 and 10). The single
/// signed counter of Resilience4j's limiter gave the current window 2 and the next 10 on
/// top of its 3 booked (13 in one window at a limit of 10).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_raised_fixed_window_limit_adds_its_difference_to_each_booked_window() {
    let limiter = RateLimiter::new(Algorithm::FixedWindow, Quota::per_second(5)).unwrap();
    let t0 = tokio::time::Instant::now();
    let wait = ms(1_000);
    let mut at: Vec<_> = (0..8).map(|_| limiter.reserve(1, wait).unwrap()).collect();
    assert_eq!(limiter.status().queued, 3);
    limiter.set_quota(Quota::per_second(10)).unwrap();
    while let Ok(a) = limiter.reserve(1, wait) {
        at.push(a);
    }
    let now = at.iter().filter(|&&a| a == t0).count();
    let next = at.iter().filter(|&&a| a == t0 + ms(1_000)).count();
    assert_eq!((now, next, at.len()), (10, 10, 20));
    // Lowered to 4 with 10 booked in the next window: nothing more there, the window after.
    limiter.set_quota(Quota::per_second(4)).unwrap();
    assert_eq!(limiter.reserve(1, ms(2_000)).unwrap(), t0 + ms(2_000));
    assert_eq!(limiter.reserve(1, ms(1_000)), Err(Denied::RetryAfter(ms(1_000))));
}

/// One step of the fixed-window model test.
#[derive(Clone, Debug)]
enum Op {
    Reserve { cost: u32, wait_ms: u64 },
    Limit(u32),
    Advance(u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (1u32..4, 0u64..3_500).prop_map(|(cost, wait_ms)| Op::Reserve { cost, wait_ms }),
        1 => (1u32..12).prop_map(Op::Limit),
        2 => (0u64..1_500).prop_map(Op::Advance),
    ]
}

proptest::proptest! {
    /// Review: the fixed window against a model that counts every window's bookings: each
    /// request lands in the first window (from the current one) with room for its whole
    /// cost under the limit in force, or is refused exactly `retry_after` before that
    /// window comes within its wait — whatever the limit changes in between.
    #[test]
    fn fixed_window_books_the_first_window_with_room_across_limit_changes(
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let period = 1_000u64;
            let mut limit = 5u32;
            let limiter = RateLimiter::new(Algorithm::FixedWindow, Quota::new(limit, ms(period))).unwrap();
            let t0 = tokio::time::Instant::now();
            let mut booked = std::collections::HashMap::<u64, u64>::new();
            for op in ops {
                match op {
                    Op::Limit(l) => {
                        limit = l;
                        limiter.set_quota(Quota::new(l, ms(period))).unwrap();
                    }
                    Op::Advance(d) => advance(ms(d)).await,
                    Op::Reserve { cost, wait_ms } => {
                        let now = (tokio::time::Instant::now() - t0).as_millis() as u64;
                        let got = limiter.reserve(cost, ms(wait_ms));
                        if cost > limit {
                            proptest::prop_assert!(matches!(got, Err(Denied::CostExceedsCapacity { .. })), "{:?}", got);
                            continue;
                        }
                        let mut w = now / period;
                        while booked.get(&w).copied().unwrap_or(0) + u64::from(cost) > u64::from(limit) {
                            w += 1;
                        }
                        let at = if w == now / period { now } else { w * period };
                        if at - now > wait_ms {
                            proptest::prop_assert_eq!(got, Err(Denied::RetryAfter(ms(at - now - wait_ms))));
                        } else {
                            proptest::prop_assert_eq!(got, Ok(t0 + ms(at)));
                            *booked.entry(w).or_default() += u64::from(cost);
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}

/// Review: a token bucket with burst 1 raised from 5/s to 10/s while callers hold slots
/// up to 3 s ahead: newcomers must not be slotted between the booked callers beyond the
/// new rate (at most 1 + 10 per second over any span).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_raised_token_bucket_never_slots_newcomers_among_the_booked_beyond_the_rate() {
    for (from, to, leaky) in [(5, 10, false), (5, 2, false), (2, 10, false), (5, 10, true), (2, 10, true)] {
        let limiter = if leaky {
            RateLimiter::new(Algorithm::LeakyBucket { queue: 40 }, Quota::per_second(from)).unwrap()
        } else {
            RateLimiter::token_bucket(Quota::per_second(from).burst(1)).unwrap()
        };
        let t0 = tokio::time::Instant::now();
        let wait = Duration::from_secs(3);
        let mut slots = Vec::new();
        while let Ok(at) = limiter.reserve(1, wait) {
            slots.push(at - t0);
        }
        limiter
            .set_quota(if leaky { Quota::per_second(to) } else { Quota::per_second(to).burst(1) })
            .unwrap();
        while let Ok(at) = limiter.reserve(1, wait) {
            slots.push(at - t0);
        }
        slots.sort();
        let interval_ns = 1_000_000_000u128 / u128::from(from.max(to));
        for (i, &a) in slots.iter().enumerate() {
            for (k, &b) in slots[i..].iter().enumerate() {
                // k + 1 requests within [a, b]: GCRA (burst 1) admits at most
                // 1 + (b - a) / interval of the faster rate.
                let bound = 1 + b.saturating_sub(a).as_nanos() / interval_ns;
                assert!(
                    (k as u128) < bound + 1,
                    "{from}->{to}/s (leaky: {leaky}): {} requests within {:?}..{:?}",
                    k + 1,
                    a,
                    b
                );
            }
        }
    }
}

/// Review: a shorter period while callers are booked. `Quota::new(5, 2 s)`: 5 admitted at
/// once and 5 booked for 2 s; the period becomes 1 s: the 5 booked run at 2 s, so the
/// window [2 s, 3 s) is full and a newcomer goes to 3 s (not beside them at 2 s).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shorter_period_counts_booked_callers_where_they_run() {
    let limiter = RateLimiter::new(Algorithm::FixedWindow, Quota::new(5, ms(2_000))).unwrap();
    let t0 = tokio::time::Instant::now();
    for i in 0..10 {
        let at = limiter.reserve(1, ms(2_000)).unwrap();
        assert_eq!(at, if i < 5 { t0 } else { t0 + ms(2_000) });
    }
    limiter.set_quota(Quota::new(5, ms(1_000))).unwrap();
    assert_eq!(limiter.reserve(1, ms(5_000)).unwrap(), t0 + ms(1_000), "[1 s, 2 s) is empty");
    for _ in 0..4 {
        limiter.reserve(1, ms(5_000)).unwrap();
    }
    assert_eq!(limiter.reserve(1, ms(5_000)).unwrap(), t0 + ms(3_000), "[2 s, 3 s) holds the 5 booked");
}

/// Found by `fuzz::any_layer_builds_or_refuses_cleanly` (an abort, "memory allocation of
/// 252979200000000000 bytes failed"): a fixed window with a caller booked a long period ahead,
/// changed to a very short period, kept its bookings in a dense list as long as the number of
/// new windows between now and the booking. The list is sparse now: memory follows the
/// callers, and the booked caller is still counted where it runs.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_much_shorter_fixed_period_keeps_bookings_in_bounded_memory() {
    let day = Duration::from_secs(86_400);
    let limiter = RateLimiter::new(Algorithm::FixedWindow, Quota::new(1, 300 * day)).unwrap();
    limiter.check().unwrap();
    let booked = limiter.reserve(1, 400 * day).unwrap(); // the next window, 300 days ahead
    assert_eq!(booked - tokio::time::Instant::now(), 300 * day);
    limiter.set_quota(Quota::new(1, Duration::from_nanos(1))).unwrap();
    let status = limiter.status();
    assert_eq!(status.queued, 1, "the booked caller still counts");
    // The window the booked caller runs in is full: a newcomer waiting that long gets the
    // one after it, never the same one.
    let next = limiter.reserve(1, 400 * day).unwrap();
    assert!(next > tokio::time::Instant::now(), "the current 1 ns window was used at once? {next:?}");
    let late = limiter.reserve(1, 400 * day).unwrap();
    assert_ne!(late, booked, "a newcomer shares the booked caller's window");
}

/// Found by the same fuzz test (a hang): a sliding window counter whose latest booking lies
/// far ahead of a short window walked every window in between, one per step. It starts at
/// the booking's window now, and refuses what lies beyond its horizon at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_distant_counter_booking_with_a_short_window_is_answered_at_once() {
    let hour = Duration::from_secs(3_600);
    let limiter = RateLimiter::new(Algorithm::SlidingWindowCounter, Quota::new(1, hour)).unwrap();
    limiter.check().unwrap();
    let booked = limiter.reserve(1, 3 * hour).unwrap();
    assert!(booked > tokio::time::Instant::now());
    limiter.set_quota(Quota::new(1, Duration::from_micros(1))).unwrap();
    // Billions of 1 µs windows lie between now and the booking: answered without walking them.
    match limiter.reserve(1, 3 * hour) {
        Ok(at) => assert!(at >= booked, "admitted before the booked caller: {at:?} < {booked:?}"),
        Err(Denied::RetryAfter(after)) => assert!(after > Duration::ZERO),
        Err(other) => panic!("{other:?}"),
    }
}
