//! Review: more cases of issue 13's kinds — refunds that could be counted twice, weights at
//! their extremes, multi-tier refusals, keyed churn at `max_keys` in wait mode, and quota
//! changes while callers wait.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use palisade_core::rejection::KeySetFull;
use palisade_core::when_full::WhenFull;
use palisade_rate_limit::{
    Algorithm, CostExceedsCapacity, Denied, KeyedRateLimiter, KeyedStore, Quota, RateLimitLayer, Tier,
};
use support::{advance, ms, retry_after, Echo};
use tower::{Layer, ServiceExt};

/// A grant gives back one admission, whatever the algorithm: `per_second(2)`, burst 2: two
/// grants at t=0 empty the key; the first is refunded. One admission is free again (the
/// second grant still holds the other): exactly one more request may pass. A second refund
/// of the same grant cannot be written: `KeyedStore::refund` takes the grant by value and
/// `Grant` is not `Clone` (a `compile_fail` doctest on `Grant` checks it). Before, `Grant`
/// was `Clone` and `refund` took `&Grant`: GCRA's first refund moved the TAT back to exactly
/// the grant's `tat_after`, so a second one matched again and subtracted once more, and the
/// windows subtracted the count again.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_grant_refunded_twice_gives_back_one_admission() {
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::FixedWindow,
    ] {
        let limiter = KeyedRateLimiter::builder()
            .algorithm(algorithm)
            .quota(Quota::per_second(2).burst(2))
            .build()
            .unwrap();
        let store = limiter.store();
        let now = tokio::time::Instant::now();
        let a = store.acquire(&"k", 1, now, None).unwrap();
        let _b = store.acquire(&"k", 1, now, None).unwrap();
        assert_eq!(store.status(&"k", now).unwrap().remaining, 0, "{algorithm:?}");
        store.refund(a);
        assert_eq!(store.status(&"k", now).unwrap().remaining, 1, "{algorithm:?}: b still holds one");
        assert!(limiter.check_key(&"k").is_ok(), "{algorithm:?}");
        assert!(limiter.check_key(&"k").is_err(), "{algorithm:?}: a third admission in the burst");
    }
}

/// The tower contract's refund, late: `per_second(3)`, burst 3, reject mode. A service is
/// polled ready at t=0 (it reserves a token) and kept; at 308 ms two calls pass; then the
/// kept service is dropped, unused, and gives its token back. By then that reservation's
/// debt is 25 ms (it would have been repaid at 333 ms), but the refund gives back a whole
/// interval (333 ms): at 308 ms one more call passes, and another at 366 ms — four calls
/// within 58 ms on a limit of 3 per second with a burst of 3 (three at most, as if the
/// reservation had never been made).
///
/// Before, `Gcra::refund` subtracted `cost × T` whenever `tat − tau ≤ now` though other
/// admissions followed; it now gives back only the debt still unpaid,
/// `min(cost × T, tat_after − now)`, which never over-credits (the later admissions built on
/// at least that much of it).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reservation_given_back_late_returns_only_its_unpaid_debt() {
    use std::future::poll_fn;
    use tower::Service;
    let layer = RateLimitLayer::builder().quota(Quota::per_second(3).burst(3)).build().unwrap();
    let svc = layer.layer(Echo);
    let mut kept = svc.clone();
    poll_fn(|cx| Service::<u32>::poll_ready(&mut kept, cx)).await.unwrap();
    advance(ms(308)).await;
    let mut passed = 0;
    for i in 0..2 {
        passed += u32::from(svc.clone().oneshot(i).await.is_ok());
    }
    drop(kept);
    passed += u32::from(svc.clone().oneshot(2).await.is_ok());
    advance(ms(58)).await;
    passed += u32::from(svc.clone().oneshot(3).await.is_ok());
    assert!(passed <= 3, "{passed} calls within 58 ms on a limit of 3/s, burst 3");
}

/// Resilience4j `changeTimeoutDuration` through the handle: `per_second(1)`, burst 1, reject
/// mode. A second call is refused at once; after `set_when_full(wait(3 s))` three callers
/// wait for their slots at 1, 2 and 3 s, and the next (4 s away) is refused at once with
/// `retry_after` 1 s; back to `Refuse`, the three already waiting keep their slots and a
/// new caller is refused at once (`retry_after` 4 s). For the global fast path, a keyed
/// tier (its reject-mode fast path) and a weighted layer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn when_full_changes_at_run_time_for_new_callers_only() {
    for case in 0..3 {
        let builder = RateLimitLayer::builder();
        let builder = match case {
            0 => builder.quota(Quota::per_second(1).burst(1)),
            1 => builder.tier(Tier::keyed(Quota::per_second(1).burst(1), |_: &u32| Some(0u8))),
            _ => builder.quota(Quota::per_second(1).burst(1)).weight(|_: &u32| 1),
        };
        let layer = builder.build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(Echo);
        let start = tokio::time::Instant::now();
        svc.clone().oneshot(0).await.unwrap();
        let err = svc.clone().oneshot(1).await.unwrap_err();
        assert_eq!(retry_after(&err), ms(1_000), "case {case}");

        handle.set_when_full(WhenFull::wait(Duration::from_secs(3)));
        assert_eq!(handle.when_full(), WhenFull::wait(Duration::from_secs(3)));
        let waiters: Vec<_> = (2..5u32).map(|i| tokio::spawn(svc.clone().oneshot(i))).collect();
        tokio::task::yield_now().await;
        let err = svc.clone().oneshot(5).await.unwrap_err();
        assert_eq!(retry_after(&err), ms(1_000), "case {case}: 4 s away, 1 s past the new max wait");
        assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");

        handle.set_when_full(WhenFull::Refuse);
        let err = svc.clone().oneshot(6).await.unwrap_err();
        assert_eq!(retry_after(&err), ms(4_000), "case {case}: refused at once again");
        for (i, w) in waiters.into_iter().enumerate() {
            assert_eq!(w.await.unwrap().unwrap(), i as u32 + 2, "case {case}: a waiter kept its slot");
        }
        assert_eq!(start.elapsed(), ms(3_000), "case {case}");
        handle.set_when_full(WhenFull::wait(Duration::MAX));
        assert_eq!(handle.when_full(), WhenFull::wait(Duration::MAX));
        handle.set_when_full(WhenFull::wait(Duration::ZERO));
        assert_eq!(handle.when_full(), WhenFull::Refuse);
    }
}

/// A zero weight passes every algorithm whatever the state, and spends nothing; a weight of
/// `u32::MAX` is `CostExceedsCapacity` at once in reject and in wait mode (never a wait).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn weights_at_their_extremes() {
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket { queue: 3 },
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::FixedWindow,
    ] {
        for when_full in [WhenFull::Refuse, WhenFull::wait(Duration::from_secs(3600))] {
            let layer = RateLimitLayer::builder()
                .algorithm(algorithm)
                .quota(Quota::per_second(2).burst(2))
                .when_full(when_full)
                .weight(|w: &u32| *w)
                .build()
                .unwrap();
            let svc = layer.layer(Echo);
            let start = tokio::time::Instant::now();
            let err = svc.clone().oneshot(u32::MAX).await.unwrap_err();
            assert!(err.is::<CostExceedsCapacity>(), "{algorithm:?} {when_full:?}: {err}");
            assert_eq!(start.elapsed(), Duration::ZERO, "{algorithm:?}: refused at once");
            // Spend the limit, then a zero weight still passes and takes nothing.
            let mut spent = 0;
            while spent < 10 && svc.clone().oneshot(1).await.is_ok() && start.elapsed().is_zero() {
                spent += 1;
            }
            let status = layer.handle().status(&()).or_else(|| layer.handle().tiers().next()?.status());
            for _ in 0..100 {
                assert_eq!(svc.clone().oneshot(0).await.unwrap(), 0, "{algorithm:?} {when_full:?}");
            }
            let after = layer.handle().status(&()).or_else(|| layer.handle().tiers().next()?.status());
            assert_eq!(status, after, "{algorithm:?}: a zero weight spends nothing");
        }
    }
}

/// Multi-tier: a keyed tier whose key set is full refuses a new key after the global tier
/// admitted it; the global tier's admission is given back (no double spending).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_key_set_full_refusal_in_a_later_tier_spends_nothing_earlier() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::new(Quota::per_minute(3).burst(3)).name("global"))
        .tier(Tier::keyed(Quota::per_minute(1).burst(1), |k: &u32| Some(*k)).name("per_key").max_keys(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(1).await.is_ok());
    for k in 2..10 {
        let err = svc.clone().oneshot(k).await.unwrap_err();
        assert!(err.is::<KeySetFull>(), "{err}");
    }
    assert_eq!(handle.tier("global").unwrap().status().unwrap().remaining, 2);
    // ... and a key refused by its own limit gives the global token back too.
    assert!(svc.clone().oneshot(1).await.is_err());
    assert_eq!(handle.tier("global").unwrap().status().unwrap().remaining, 2);
}

/// Keyed churn at `max_keys` in wait mode, every algorithm: while each held key has a
/// waiter, new keys are refused (never a reset); once the waiters ran and the keys are back
/// to fresh, new keys get their places; a held key is never admitted beyond its limit.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_churn_at_max_keys_in_wait_mode() {
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket { queue: 4 },
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::FixedWindow,
    ] {
        let layer = RateLimitLayer::builder()
            .algorithm(algorithm)
            .tier(Tier::keyed(Quota::per_second(1).burst(1), |k: &u32| Some(*k)).max_keys(4))
            .when_full(WhenFull::wait(Duration::from_secs(5)))
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(Echo);
        let start = tokio::time::Instant::now();
        let mut waiters = Vec::new();
        for k in 0..4u32 {
            svc.clone().oneshot(k).await.unwrap();
            waiters.push(tokio::spawn(svc.clone().oneshot(k)));
        }
        tokio::task::yield_now().await;
        advance(ms(100)).await;
        for k in 100..120u32 {
            let err = svc.clone().oneshot(k).await.unwrap_err();
            assert!(err.is::<KeySetFull>(), "{algorithm:?}: {err}");
        }
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        let waited = start.elapsed();
        assert!(waited >= ms(999), "{algorithm:?}: a waiter ran early, at {waited:?}");
        // Two periods on, every key is like a fresh one: new keys take their places.
        advance(Duration::from_secs(2)).await;
        for k in 100..104u32 {
            svc.clone().oneshot(k).await.unwrap();
        }
        assert_eq!(handle.snapshot().keys, 4, "{algorithm:?}");
    }
}

/// A global quota lowered while callers wait: the waiters keep their slots, and over the
/// next seconds no more is admitted than the old bookings plus the new rate allow.
/// `per_second(10)` burst 1, five callers booked at 0.1 … 0.5 s; at t=0 the quota becomes
/// `per_second(1)` burst 1; a newcomer is not admitted before the last booked slot plus
/// the new interval (1.5 s), and in reject mode it is told so exactly.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_lowered_quota_never_slots_a_newcomer_among_the_booked_waiters() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .when_full(WhenFull::wait(Duration::from_secs(10)))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    let start = tokio::time::Instant::now();
    svc.clone().oneshot(0u32).await.unwrap();
    let waiters: Vec<_> = (1..=5u32).map(|i| tokio::spawn(svc.clone().oneshot(i))).collect();
    tokio::task::yield_now().await;
    let name = handle.tiers().next().unwrap().name().to_owned();
    handle.set_quota(&name, Quota::per_second(1).burst(1)).unwrap();
    let late = tokio::spawn(svc.clone().oneshot(6u32));
    let mut times = Vec::new();
    for w in waiters {
        w.await.unwrap().unwrap();
        times.push(start.elapsed());
    }
    assert_eq!(times.last().copied(), Some(ms(500)), "booked waiters keep their slots");
    late.await.unwrap().unwrap();
    assert!(start.elapsed() >= ms(1_500), "newcomer at {:?}", start.elapsed());
}

/// The leaky bucket's queue bound holds for weights: `queue 3` at 10/s, a weight of 2 takes
/// two places; with one request leaving now and a weight-2 request queued, a further
/// weight-2 request finds one place short and is refused with the exact time until it fits
/// (and is admitted then).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_weighted_leaky_request_respects_the_queue_bound() {
    let layer = RateLimitLayer::builder()
        .algorithm(Algorithm::LeakyBucket { queue: 3 })
        .quota(Quota::per_second(10))
        .weight(|w: &u32| *w)
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(1));
    tokio_test::assert_ready_ok!(first.poll());
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    tokio_test::assert_pending!(second.poll());
    // 1 left now, 2 places taken (leaving at 100 and 200 ms): a weight of 2 would leave at
    // 400 ms, one place beyond the queue; it fits once the first queued place is gone.
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert_eq!(retry_after(&err), ms(100));
    advance(ms(99)).await;
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert_eq!(retry_after(&err), ms(1), "not before the reported time");
    advance(ms(1)).await;
    let mut third = tokio_test::task::spawn(svc.clone().oneshot(2));
    tokio_test::assert_pending!(third.poll(), "admitted to the queue at the reported time");
    advance(ms(300)).await;
    tokio_test::assert_ready_ok!(third.poll());
    tokio_test::assert_ready_ok!(second.poll());
}

/// `KeyedRateLimiter::try_acquire_key` with a zero cost on a full key set is no reason to
/// refuse a new key it would not track; with a positive cost the refusal is typed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_direct_keyed_check_on_a_full_set_is_typed() {
    let limiter =
        KeyedRateLimiter::builder().quota(Quota::per_minute(1).burst(1)).max_keys(1).build().unwrap();
    limiter.check_key(&1u32).unwrap();
    assert_eq!(limiter.try_acquire_key(&2, 1), Err(Denied::KeySetFull { capacity: 1 }));
    assert_eq!(limiter.len(), 1);
}

mod model {
    use super::*;
    use proptest::prelude::*;
    use tokio::time::Instant;

    #[derive(Clone, Debug)]
    enum Op {
        /// The clock moves on `advance` ms; a request of `cost` reads it `lag` ms stale.
        Acquire { advance: u64, lag: u64, cost: u32 },
        /// An outstanding grant (by index) is given back, once.
        Refund(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..150, 0u64..400, 0u32..4).prop_map(|(advance, lag, cost)| Op::Acquire { advance, lag, cost }),
            1 => any::<usize>().prop_map(Op::Refund),
        ]
    }

    /// The cost admitted, and not given back, within `[from, to)` (effective times).
    fn within(admitted: &[(u64, u32, bool)], from: u64, to: u64) -> u64 {
        admitted.iter().filter(|a| !a.2 && a.0 >= from && a.0 < to).map(|a| u64::from(a.1)).sum()
    }

    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
    }

    proptest! {
        /// Weighted requests whose clock readings arrive out of order (up to 400 ms stale),
        /// with single refunds of unused grants through the keyed store, every algorithm:
        /// by effective time (the latest reading the limiter has seen) the sliding log never holds more
        /// than `limit` in any window of `period`, the fixed window never more than `limit`
        /// in one of its windows, the token bucket never more than `burst` plus what the
        /// rate refilled since, and the sliding counter never more than twice the limit in
        /// a window. What was given back does not count.
        #[test]
        fn weighted_out_of_order_requests_with_refunds_never_over_admit(
            limit in 1u32..8,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            check(&[Algorithm::SlidingWindowLog, Algorithm::SlidingWindowCounter, Algorithm::FixedWindow], limit, &ops)?;
        }

        /// The same for the token bucket: a refund made after later admissions gives back
        /// only the debt still unpaid (before, the whole `cost × T`: see
        /// `a_reservation_given_back_late_returns_only_its_unpaid_debt`).
        #[test]
        fn token_bucket_weighted_out_of_order_requests_with_refunds_never_over_admit(
            limit in 1u32..8,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            check(&[Algorithm::TokenBucket], limit, &ops)?;
        }
    }

    /// Found by the token bucket's model: `limit` 5 (one back every 200 ms, burst 5). A
    /// reservation of 3 and one of 1 at t=0; the 3 is given back (the 1's slot moves from
    /// [600, 800) to [0, 200) ms); two more at 159 ms; the 1 is given back then — its slot
    /// was moved, so only 41 ms of it is unpaid, not the 200 ms its `tat_after` (800 ms)
    /// would say. Giving back 200 ms let 8 through since 159 ms where at most 5 + what
    /// 227 ms refilled may pass.
    #[test]
    fn a_refund_after_an_earlier_refund_moved_its_slot_gives_back_only_what_is_left() {
        use Op::{Acquire as A, Refund as R};
        let ops = [
            A { advance: 0, lag: 0, cost: 0 },
            A { advance: 0, lag: 0, cost: 3 },
            R(0),
            A { advance: 0, lag: 0, cost: 1 },
            R(0),
            A { advance: 49, lag: 0, cost: 0 },
            R(1),
            A { advance: 110, lag: 0, cost: 0 },
            A { advance: 0, lag: 0, cost: 1 },
            A { advance: 0, lag: 0, cost: 1 },
            R(1),
            R(0),
            A { advance: 147, lag: 0, cost: 0 },
            A { advance: 80, lag: 0, cost: 3 },
            A { advance: 128, lag: 0, cost: 0 },
            A { advance: 134, lag: 0, cost: 0 },
            A { advance: 103, lag: 0, cost: 3 },
        ];
        check(&[Algorithm::TokenBucket], 5, &ops).unwrap();
    }

    fn check(algorithms: &[Algorithm], limit: u32, ops: &[Op]) -> Result<(), TestCaseError> {
        let period_ms = 1_000u64;
        for &algorithm in algorithms {
            let rt = paused();
            let _clock = rt.enter();
            let limiter = KeyedRateLimiter::builder()
                .algorithm(algorithm)
                .quota(Quota::new(limit, Duration::from_millis(period_ms)))
                .build()
                .unwrap();
            let store = limiter.store();
            let t0 = Instant::now();
            let (mut true_ms, mut latest) = (0u64, 0u64);
            // How far the (paused) clock has been moved: only refunds read it.
            let mut clock = Duration::ZERO;
            let mut admitted: Vec<(u64, u32, bool)> = Vec::new();
            let mut grants = Vec::new();
            for op in ops {
                match *op {
                    Op::Acquire { advance, lag, cost } => {
                        true_ms += advance;
                        let reading = true_ms.saturating_sub(lag);
                        // The limiter sees the readings of requests that reach its state: a
                        // weight of 0 (always admitted) or above the limit (refused at once)
                        // tells it nothing, so it cannot order a stale reading after them.
                        if (1..=limit).contains(&cost) {
                            latest = latest.max(reading);
                        }
                        let at = t0 + Duration::from_millis(reading);
                        if let Ok(grant) = store.acquire(&0u8, cost, at, None) {
                            grants.push((admitted.len(), grant));
                            admitted.push((latest, cost, false));
                        }
                    }
                    Op::Refund(i) if !grants.is_empty() => {
                        // A refund reads the limiter's clock when it is given back: the true
                        // time, never behind what the limiter has seen (a refund's credit is
                        // the debt unpaid at that reading, see `Gcra::refund`).
                        let behind = Duration::from_millis(true_ms).saturating_sub(clock);
                        rt.block_on(tokio::time::advance(behind));
                        clock += behind;
                        let (index, grant) = grants.swap_remove(i % grants.len());
                        store.refund(grant);
                        admitted[index].2 = true;
                    }
                    Op::Refund(_) => {}
                }
                let l = u64::from(limit);
                match algorithm {
                    Algorithm::SlidingWindowLog => {
                        for a in &admitted {
                            let n = within(&admitted, a.0, a.0 + period_ms);
                            prop_assert!(n <= l, "{:?}: {} in [{}, +1 s)", algorithm, n, a.0);
                        }
                    }
                    Algorithm::SlidingWindowCounter => {
                        for a in &admitted {
                            let n = within(&admitted, a.0, a.0 + period_ms);
                            prop_assert!(n <= 2 * l, "{:?}: {} in [{}, +1 s)", algorithm, n, a.0);
                        }
                    }
                    Algorithm::FixedWindow => {
                        for a in &admitted {
                            let start = a.0 / period_ms * period_ms;
                            let n = within(&admitted, start, start + period_ms);
                            prop_assert!(n <= l, "{:?}: {} in window {}", algorithm, n, start);
                        }
                    }
                    _ => {
                        // GCRA: burst `limit`, one back every `period / limit`.
                        for a in &admitted {
                            let n = within(&admitted, a.0, latest + 1);
                            let refill = (latest - a.0) * l / period_ms;
                            prop_assert!(n <= l + refill, "{:?}: {} since {}", algorithm, n, a.0);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Key churn at `max_keys` on several threads over real time, with sweeps running all the
/// while: 8 keys share 3 places, so keys are forgotten and re-made constantly, and a key
/// may be forgotten only when it is as good as new. Counted per key inside the inner
/// service, no key ever passes more than its limit allows over the run (a key reset while
/// it still constrained would pass a fresh burst early). Only counts are asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_churn_on_threads_never_resets_a_constraining_key() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use tower::Service;
    const KEYS: usize = 8;
    for algorithm in [Algorithm::TokenBucket, Algorithm::SlidingWindowLog, Algorithm::FixedWindow] {
        let (limit, period) = (5u32, Duration::from_millis(40));
        let layer = RateLimitLayer::builder()
            .algorithm(algorithm)
            .tier(Tier::keyed(Quota::new(limit, period), |k: &usize| Some(*k)).name("k").max_keys(3))
            .build()
            .unwrap();
        let handle = layer.handle();
        let passed: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
        let counts = passed.clone();
        let inner = tower::service_fn(move |k: usize| {
            counts[k].fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok::<_, std::convert::Infallible>(()))
        });
        let svc = layer.layer(inner);
        let start = tokio::time::Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let sweeper = {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    handle.sweep();
                    tokio::task::yield_now().await;
                }
            })
        };
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    for i in 0..4_000usize {
                        let key = (i * 7 + t * 3) % KEYS;
                        let _ = svc.ready().await.unwrap().call(key).await;
                        if i % 8 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        sweeper.await.unwrap();
        let elapsed = start.elapsed();
        let windows = (elapsed.as_nanos() / period.as_nanos()) as u64 + 1;
        let bound = match algorithm {
            Algorithm::TokenBucket => {
                u64::from(limit) + (elapsed.as_nanos() / (period.as_nanos() / u128::from(limit))) as u64 + 1
            }
            _ => u64::from(limit) * windows,
        };
        for (k, n) in passed.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            assert!(n <= bound, "{algorithm:?}: key {k} passed {n} in {elapsed:?}, bound {bound}");
        }
        assert!(passed.iter().any(|n| n.load(Ordering::Relaxed) > 0));
    }
}
