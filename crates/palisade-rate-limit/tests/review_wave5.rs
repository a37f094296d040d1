//! Review wave 5: more cases of issue 13's kinds — readings older than a key's forgetting,
//! exact `retry_after` across tiers and beyond a sliding counter's horizon, and window
//! bookings and refunds across a change of period.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::future::poll_fn;
use std::time::Duration;

use palisade_core::when_full::WhenFull;
use palisade_rate_limit::{
    Algorithm, Denied, KeyedRateLimiter, KeyedStore, Quota, RateLimitLayer, RateLimiter, Tier,
};
use support::{advance, ms, retry_after, Echo};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const ALL: [Algorithm; 5] = [
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket { queue: 0 },
    Algorithm::SlidingWindowLog,
    Algorithm::SlidingWindowCounter,
    Algorithm::FixedWindow,
];

const NS: Duration = Duration::from_nanos(1);

/// Kinds 1 and 2: a key forgotten, then a reading older than the forgetting. `per_second(1)`,
/// burst 1, one key, every algorithm: admitted at 0.9 s; at 2.1 s the key is back to a fresh
/// key's state and a sweep forgets it; then a request whose reading was taken at 1.4 s
/// (before a lock, applied after the sweep), then ones at 2.1 s, 2.6 s and 3.05 s. A limiter
/// that never forgets (the same readings, in the same order) is the reference: forgetting
/// must change no decision. Before, the key's new state started from the stale reading as
/// if nothing had happened before it: the token bucket admitted at "1.4 s" what the kept key
/// refused, the fixed window admitted at "1.4 s" and again at 2.1 s (two within a window),
/// the log at "1.4 s" and again at 2.6 s, the counter again at 3.05 s.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reading_older_than_a_forgetting_decides_as_the_kept_key_would() {
    for algorithm in ALL {
        let quota = Quota::per_second(1).burst(1);
        let keyed =
            KeyedRateLimiter::builder().algorithm(algorithm).quota(quota).max_keys(4).build().unwrap();
        let kept = RateLimiter::new(algorithm, quota).unwrap();
        let t0 = Instant::now();
        let store = keyed.store();
        let step = |at: Instant| {
            let forgetful = store.acquire(&"a", 1, at, None).map(|_| ());
            let reference = kept.try_acquire_at(1, at);
            assert_eq!(forgetful.is_ok(), reference.is_ok(), "{algorithm:?} at {:?}", at - t0);
        };
        step(t0 + ms(900));
        advance(ms(2_100)).await;
        // The reference sees the forgetting time too (a status read, as the sweep's).
        let _ = kept.status();
        assert_eq!(keyed.sweep(), 1, "{algorithm:?}: the key is back to a fresh key's state");
        step(t0 + ms(1_400));
        step(t0 + ms(2_100));
        advance(ms(500)).await;
        step(t0 + ms(2_600));
        advance(ms(450)).await;
        step(t0 + ms(3_050));
    }
}

/// Kind 4, several tiers: the `retry_after` of a refusal is when the same request passes
/// every tier. A global `per_second(10)` burst 1 and a per-user `per_second(1)` burst 1: user
/// `u` passes at t=0; sent again at once it is refused by the global tier (100 ms) — but at
/// 100 ms its own tier still refuses it (900 ms more). Before, the first refusing tier's wait
/// was reported alone, so a client retrying at `retry_after` was refused again.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_multi_tier_retry_after_is_the_time_every_tier_admits() {
    for (global_first, weight) in [(true, 1), (false, 1), (true, 2)] {
        let global = Tier::new(Quota::per_second(10).burst(2)).name("global");
        let per_user = Tier::keyed(Quota::per_second(1).burst(2), |u: &&str| Some(*u)).name("per_user");
        let builder = RateLimitLayer::builder().weight(move |_: &&str| weight);
        let builder = if global_first {
            builder.tier(global).tier(per_user)
        } else {
            builder.tier(per_user).tier(global)
        };
        let layer = builder.build().unwrap();
        let svc = layer.layer(Echo);
        svc.clone().oneshot("u").await.unwrap();
        if weight == 1 {
            svc.clone().oneshot("u").await.unwrap();
        }
        // The global tier is empty for 100 ms per unit, `u`'s tier for a second per unit.
        let err = svc.clone().oneshot("u").await.unwrap_err();
        let after = retry_after(&err);
        assert_eq!(after, ms(1_000) * weight, "global first {global_first}, weight {weight}");
        advance(after.checked_sub(NS).unwrap()).await;
        assert!(svc.clone().oneshot("u").await.is_err(), "admitted before its retry_after");
        advance(NS).await;
        svc.clone().oneshot("u").await.unwrap();
    }
}

/// Kind 4, wait mode beyond the sliding counter's horizon (64 windows booked ahead): a
/// request refused because its slot lies beyond the horizon gets the time until the slot
/// comes within it. `Quota::new(1, 1 s)`, waits up to 100 s: the counter books one caller
/// every 2 s, so the 33rd booking (66 windows ahead) is refused although within `max_wait`.
/// Its `retry_after` must be when it is admitted to wait (2 s, when the horizon has moved
/// two windows on); before, it was 1 ns, so a client retrying then was refused again.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_counter_booking_beyond_its_horizon_reports_when_it_fits() {
    let limiter = RateLimiter::new(Algorithm::SlidingWindowCounter, Quota::new(1, ms(1_000))).unwrap();
    let max_wait = Duration::from_secs(100);
    let after = loop {
        match limiter.reserve(1, max_wait) {
            Ok(_) => {}
            Err(Denied::RetryAfter(after)) => break after,
            Err(other) => panic!("{other:?}"),
        }
    };
    assert!(after > NS, "retry_after {after:?}");
    advance(after.checked_sub(NS).unwrap()).await;
    assert!(limiter.reserve(1, max_wait).is_err(), "admitted before its retry_after {after:?}");
    advance(NS).await;
    limiter.reserve(1, max_wait).unwrap();
}

/// Kind 5, a sliding window counter's booked callers across a change of period. Shorter:
/// `Quota::new(1, 1 s)`, one admitted at 0, one booked for 2 s; the period becomes 100 ms. At
/// 2 s the booked caller runs: a newcomer at 2 s must be refused (the window ending then holds
/// the booked caller). Before, the booking stayed at "two windows ahead" in the new, shorter
/// windows (0.2 s), so at 2 s nothing was counted and the newcomer passed with it.
/// Longer: `Quota::new(2, 100 ms)`, two admitted at 0 and two booked (150 ms, 200 ms); the
/// period becomes 1 s with a limit of 4: the four are all in the window ending at 200 ms,
/// so nothing more passes then. Before, the bookings were counted in the next two 1 s
/// windows: two more passed at 200 ms.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_counter_counts_booked_callers_where_they_run_across_a_new_period() {
    let limiter = RateLimiter::new(Algorithm::SlidingWindowCounter, Quota::new(1, ms(1_000))).unwrap();
    let t0 = Instant::now();
    limiter.check().unwrap();
    assert_eq!(limiter.reserve(1, ms(5_000)).unwrap(), t0 + ms(2_000));
    limiter.set_quota(Quota::new(1, ms(100))).unwrap();
    advance(ms(2_000)).await;
    assert!(limiter.check().is_err(), "a newcomer shares the booked caller's 100 ms");

    let limiter = RateLimiter::new(Algorithm::SlidingWindowCounter, Quota::new(2, ms(100))).unwrap();
    let t0 = Instant::now();
    limiter.check().unwrap();
    limiter.check().unwrap();
    assert_eq!(limiter.reserve(1, ms(1_000)).unwrap(), t0 + ms(150));
    assert_eq!(limiter.reserve(1, ms(1_000)).unwrap(), t0 + ms(200));
    limiter.set_quota(Quota::new(4, ms(1_000))).unwrap();
    advance(ms(200)).await;
    assert!(limiter.check().is_err(), "a fifth request within one second of a limit of 4");
}

/// Kind 4 after a change of period that put a sliding counter's booked caller beyond its
/// horizon: `Quota::new(1, 1 s)`, one admitted at 0, one booked for 2 s; the period becomes
/// 10 ms, so the booked caller's window is 200 windows ahead (beyond the 64 a counter books
/// into). A newcomer is refused with the time until it passes, and passes then: not at 2 s,
/// where the booked caller runs (the window ending then holds it), but at 2.02 s, once its
/// 10 ms window and the next have passed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_counter_booking_beyond_its_horizon_after_a_new_period_still_counts() {
    let limiter = RateLimiter::new(Algorithm::SlidingWindowCounter, Quota::new(1, ms(1_000))).unwrap();
    let t0 = Instant::now();
    limiter.check().unwrap();
    assert_eq!(limiter.reserve(1, ms(5_000)).unwrap(), t0 + ms(2_000));
    limiter.set_quota(Quota::new(1, ms(10))).unwrap();
    assert_eq!(limiter.status().queued, 1, "the booked caller still counts");
    let Err(Denied::RetryAfter(after)) = limiter.check() else { panic!("admitted before the booked caller") };
    assert_eq!(after, ms(2_020));
    advance(after.checked_sub(NS).unwrap()).await;
    assert!(limiter.check().is_err(), "admitted before its retry_after");
    advance(NS).await;
    limiter.check().unwrap();
}

/// Kind 5, a window reservation given back after a change of period: the windows were
/// renumbered, so its window index names another window now. Fixed window `Quota::new(1,
/// 1 s)`, wait mode: A passes at 0, B is booked into [1 s, 2 s), C into [2 s, 3 s) (both
/// services polled ready and kept). The period becomes 500 ms: B now sits in window 2
/// ([1.0 s, 1.5 s)), C in window 4. C is dropped: its refund names old window 2 — B's window
/// now. Before, it emptied B's window, so a newcomer was booked next to B at 1.0 s: two
/// requests within one 500 ms window of a limit of 1. A reservation made before a period
/// change now lapses when given back (as a token bucket's does), so B's window stays full.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_window_refund_after_a_new_period_never_empties_another_window() {
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindowCounter] {
        let limiter = RateLimiter::new(algorithm, Quota::new(1, ms(1_000))).unwrap();
        let layer = RateLimitLayer::builder()
            .tier(Tier::limiter(limiter.clone()))
            .when_full(WhenFull::wait(Duration::from_secs(10)))
            .build()
            .unwrap();
        let svc = layer.layer(Echo);
        let t0 = Instant::now();
        svc.clone().oneshot(0u32).await.unwrap();
        let mut b = svc.clone();
        let mut c = svc.clone();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(Service::<u32>::poll_ready(&mut b, &mut cx).is_pending());
        assert!(Service::<u32>::poll_ready(&mut c, &mut cx).is_pending());
        let booked = limiter.status().queued;
        assert_eq!(booked, 2, "{algorithm:?}");
        limiter.set_quota(Quota::new(1, ms(500))).unwrap();
        drop(c);
        // Whatever the refund did, no newcomer may be booked into the window B runs in.
        let b_at = match algorithm {
            Algorithm::FixedWindow => t0 + ms(1_000),
            _ => t0 + ms(2_000),
        };
        for _ in 0..4 {
            let at = limiter.reserve(1, Duration::from_secs(10)).unwrap();
            assert!(
                at + ms(500) <= b_at || at >= b_at + ms(500),
                "{algorithm:?}: a newcomer at {:?} within 500 ms of B at {:?}",
                at - t0,
                b_at - t0
            );
        }
        // B still runs at its slot.
        tokio::time::sleep_until(b_at).await;
        poll_fn(|cx| Service::<u32>::poll_ready(&mut b, cx)).await.unwrap();
        assert_eq!(b.call(1).await.unwrap(), 1);
    }
}

/// Kind 2 with the fast clock: a layer on `Clock::quanta` decides by that clock in every
/// path, not only in the reject-mode fast path. `per_second(1)` burst 1, wait mode, the
/// quanta clock mocked and tokio's paused clock moved on alone by 1 s (two clocks apart, as
/// a time-stamp counter and the system clock drift apart): by the limiter's clock no time
/// has passed, so a second request waits its second. Before, the wait-mode path (and every
/// keyed, weighted or multi-tier one) judged by tokio's instant: a second of refill that the
/// limiter's own clock had not seen, and the request passed at once.
#[cfg(feature = "quanta")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_layer_path_decides_by_the_fast_clock() {
    use palisade_rate_limit::Clock;
    use tokio_test::{assert_pending, assert_ready_ok, task};
    for keyed in [false, true] {
        let (clock, mock) = quanta::Clock::mock();
        mock.increment(Duration::from_secs(1_000));
        let builder = RateLimitLayer::builder()
            .quota(Quota::per_second(1).burst(1))
            .when_full(WhenFull::wait(Duration::from_secs(5)))
            .clock(Clock::from_quanta(clock));
        let builder = if keyed { builder.keyed(|k: &u32| Some(*k)) } else { builder };
        let layer = builder.build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(Echo);
        svc.clone().oneshot(1).await.unwrap();
        advance(ms(1_000)).await; // tokio only
        let mut second = task::spawn(svc.clone().oneshot(1));
        assert_pending!(second.poll(), "keyed {keyed}: passed on tokio's clock");
        assert_eq!(handle.snapshot().waited, 1);
        mock.increment(ms(1_000));
        advance(ms(1_000)).await;
        assert_eq!(assert_ready_ok!(second.poll()), 1);
    }
}

/// Kind 5, a change of quota decides the same whether or not the limiter was looked at
/// before it (a `status` read, the handle's, a metrics scrape). Two limiters with the same
/// history, `Quota::new(5, 1 s)`, five admitted at 0; at 1 s one of them is read; then both
/// get a new quota (a longer period, a shorter one, a lower limit), and the same requests
/// follow. Before, a sliding log dropped its entries older than the old period only when
/// looked at, so after a change to 10 s the limiter read first admitted five more at 1 s
/// and the other none.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_quota_change_decides_the_same_whether_the_limiter_was_read_before() {
    for algorithm in ALL {
        for new in [Quota::new(5, ms(10_000)), Quota::new(5, ms(300)), Quota::new(2, ms(1_000))] {
            let old = Quota::new(5, ms(1_000)).burst(5);
            let new = new.burst(new.limit());
            let read = RateLimiter::new(algorithm, old).unwrap();
            let unread = RateLimiter::new(algorithm, old).unwrap();
            let t0 = Instant::now();
            for _ in 0..5 {
                let _ = read.check();
                let _ = unread.check();
            }
            advance(ms(1_000)).await;
            let _ = read.status();
            read.set_quota(new).unwrap();
            unread.set_quota(new).unwrap();
            for step in 0..40u64 {
                let (a, b) = (read.check().is_ok(), unread.check().is_ok());
                assert_eq!(a, b, "{algorithm:?} to {new:?}, at {:?}", Instant::now() - t0);
                advance(ms(50 + 17 * (step % 3))).await;
            }
        }
    }
}

/// Kind 4 with a leaky bucket among several tiers. Several tiers admit a request only when
/// each can at once (a tier reserved now but used later would let its key pass twice), and a
/// leaky bucket never lets a weight above 1 leave at once, even empty: such a request can
/// never pass. A global `per_second(10)` burst 5 and a leaky `per_second(20)` with a queue of
/// 5, weight 2: refused at once with `CostExceedsCapacity` (capacity 1), in reject mode and in
/// wait mode. Before, reject mode answered `RateLimited` with 50 ms, and at 50 ms the same
/// again, for ever; wait mode held the caller its whole `max_wait` and then refused it.
/// (Found by `multi_tier::retry_after_is_exact_across_tiers_and_weights`, as were two more
/// cases fixed with it: a leaky tier after the refusing one was asked for a queue place, not
/// for when it admits at once; and one before it that had queued the request was not asked
/// at all — each `retry_after` was short by the queue's wait.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_weight_above_one_at_a_leaky_tier_among_several_can_never_pass() {
    use palisade_rate_limit::CostExceedsCapacity;
    for when_full in [WhenFull::Refuse, WhenFull::wait(ms(1_000))] {
        let layer = RateLimitLayer::builder()
            .tier(Tier::new(Quota::per_second(10).burst(5)))
            .tier(
                Tier::new(Quota::per_second(20)).algorithm(Algorithm::LeakyBucket { queue: 5 }).name("leaky"),
            )
            .weight(|w: &u32| *w)
            .when_full(when_full)
            .build()
            .unwrap();
        let svc = layer.layer(Echo);
        svc.clone().oneshot(1).await.unwrap();
        let t0 = Instant::now();
        let err = svc.clone().oneshot(2).await.unwrap_err();
        let too_heavy =
            err.downcast_ref::<CostExceedsCapacity>().unwrap_or_else(|| panic!("{when_full:?}: {err}"));
        assert_eq!((too_heavy.cost(), too_heavy.capacity()), (2, 1));
        assert_eq!(Instant::now(), t0, "{when_full:?}: refused only after a wait");
        // A weight of 1 still passes both.
        advance(ms(100)).await;
        svc.clone().oneshot(1).await.unwrap();
    }
}

#[cfg(not(loom))]
mod multi_tier {
    use super::*;
    use proptest::prelude::*;

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::TokenBucket),
            Just(Algorithm::SlidingWindowLog),
            Just(Algorithm::SlidingWindowCounter),
            Just(Algorithm::FixedWindow),
            (0u32..3).prop_map(|queue| Algorithm::LeakyBucket { queue }),
        ]
    }

    fn tier() -> impl Strategy<Value = (Algorithm, u32, u64, u32)> {
        // (algorithm, limit, period in ms, burst)
        (algorithm(), 1u32..6, 50u64..2_000, 1u32..6)
    }

    fn run(tiers: &[(Algorithm, u32, u64, u32)], ops: &[(u64, u32)], wait: u64) -> Result<(), TestCaseError> {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let when_full = if wait == 0 { WhenFull::Refuse } else { WhenFull::wait(ms(wait)) };
            let mut builder = RateLimitLayer::builder().weight(|w: &u32| *w).when_full(when_full);
            for (i, &(algorithm, limit, period, burst)) in tiers.iter().enumerate() {
                let quota = Quota::new(limit, ms(period)).burst(burst);
                builder = builder.tier(if i % 2 == 1 {
                    Tier::keyed(quota, |w: &u32| Some(*w % 2)).algorithm(algorithm)
                } else {
                    Tier::new(quota).algorithm(algorithm)
                });
            }
            let svc = builder.build().unwrap().layer(Echo);
            for &(gap, weight) in ops {
                advance(ms(gap)).await;
                let Err(err) = svc.clone().oneshot(weight).await else { continue };
                let Some(limited) = err.downcast_ref::<palisade_core::rejection::RateLimited>() else {
                    continue; // CostExceedsCapacity: never admitted
                };
                let after = limited.retry_after();
                prop_assert!(after > Duration::ZERO);
                advance(after.saturating_sub(NS)).await;
                prop_assert!(
                    svc.clone().oneshot(weight).await.is_err(),
                    "weight {weight} admitted {after:?} - 1 ns after its refusal"
                );
                advance(NS).await;
                prop_assert!(
                    svc.clone().oneshot(weight).await.is_ok(),
                    "weight {weight} refused {after:?} after its refusal"
                );
            }
            Ok(())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Kind 4 across tiers and weights, reject mode and wait mode: whenever a request is
        /// refused, the same request sent `retry_after` − 1 ns later is refused and sent
        /// `retry_after` later is admitted (in wait mode: to wait, and then passes), whatever
        /// the tiers' algorithms and quotas.
        #[test]
        fn retry_after_is_exact_across_tiers_and_weights(
            tiers in proptest::collection::vec(tier(), 2..4),
            ops in proptest::collection::vec((0u64..300, 1u32..4), 1..40),
            wait in prop_oneof![Just(0u64), 1u64..400],
        ) {
            run(&tiers, &ops, wait)?;
        }
    }
}

#[cfg(not(loom))]
mod forgetting {
    use super::*;
    use palisade_rate_limit::store::Grant;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Acquire { key: u8, cost: u32, wait: Option<u64> },
        Refund(usize),
        Drop(usize),
        Sweep,
        SetQuota(u32, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..400).prop_map(Op::Advance),
            6 => (0u8..6, 1u32..3, prop::option::of(0u64..1_500))
                .prop_map(|(key, cost, wait)| Op::Acquire { key, cost, wait }),
            1 => any::<usize>().prop_map(Op::Refund),
            1 => any::<usize>().prop_map(Op::Drop),
            1 => Just(Op::Sweep),
            1 => (1u32..4, 100u64..2_000).prop_map(|(l, p)| Op::SetQuota(l, p)),
        ]
    }

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::TokenBucket),
            (0u32..3).prop_map(|queue| Algorithm::LeakyBucket { queue }),
            Just(Algorithm::SlidingWindowLog),
            Just(Algorithm::SlidingWindowCounter),
            Just(Algorithm::FixedWindow),
        ]
    }

    fn run(algorithm: Algorithm, quota: Quota, max_keys: usize, ops: &[Op]) -> Result<(), TestCaseError> {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let build = |max_keys| {
                KeyedRateLimiter::builder()
                    .algorithm(algorithm)
                    .quota(quota)
                    .max_keys(max_keys)
                    .build()
                    .unwrap()
            };
            let (small, reference) = (build(max_keys), build(1_000));
            // Grants held by both, for the same admission.
            let mut held: Vec<(Grant, Grant)> = Vec::new();
            for op in ops {
                match *op {
                    Op::Advance(n) => advance(ms(n)).await,
                    Op::Acquire { key, cost, wait } => {
                        let now = Instant::now();
                        let wait = wait.map(ms);
                        let got = small.store().acquire(&key, cost, now, wait);
                        if matches!(got, Err(Denied::KeySetFull { .. })) {
                            continue;
                        }
                        let want = reference.store().acquire(&key, cost, now, wait);
                        match (got, want) {
                            (Ok(a), Ok(b)) => {
                                prop_assert_eq!(a.ready_at(), b.ready_at(), "key {} at {:?}", key, now);
                                held.push((a, b));
                            }
                            (Err(a), Err(b)) => prop_assert_eq!(a, b, "key {}", key),
                            (a, b) => {
                                let msg = format!("key {key}: {a:?} but a key never forgotten: {b:?}");
                                return Err(TestCaseError::fail(msg));
                            }
                        }
                    }
                    Op::Refund(i) if !held.is_empty() => {
                        let (a, b) = held.swap_remove(i % held.len());
                        small.store().refund(a);
                        reference.store().refund(b);
                    }
                    // Used: kept by nobody.
                    Op::Drop(i) if !held.is_empty() => drop(held.swap_remove(i % held.len())),
                    Op::Sweep => {
                        small.sweep();
                    }
                    Op::SetQuota(limit, period) => {
                        let quota = Quota::new(limit, ms(period)).burst(limit);
                        small.set_quota(quota).unwrap();
                        reference.set_quota(quota).unwrap();
                    }
                    _ => {}
                }
                prop_assert!(small.len() <= max_keys);
            }
            Ok(())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        /// Kind 1 as a model: a keyed store of 2 or 3 keys, forced to forget (new keys when
        /// full, sweeps), decides every request exactly as a store that never forgets —
        /// waits and their slots, refunds of reservations given back, quota changes at run
        /// time, every algorithm — except that a new key may be refused while the set is
        /// full of keys that still constrain someone.
        #[test]
        fn forgetting_keys_changes_no_decision(
            algorithm in algorithm(),
            limit in 1u32..4,
            period in 100u64..2_000,
            max_keys in 2usize..4,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let quota = Quota::new(limit, ms(period)).burst(limit);
            run(algorithm, quota, max_keys, &ops)?;
        }
    }
}

/// Kind 2 over real time on a multi-thread runtime, with both clocks and several tiers: 16
/// tasks call a layer whose per-key tier (one key) and global tier share the load; the
/// calls counted inside the inner service never exceed what the tighter tier allows over
/// the time measured around them (its burst or window limit, plus one per interval or per
/// window begun). The layer reads its clock outside any lock, so readings reach each tier
/// out of order; no tier may admit more for it.
#[cfg(feature = "quanta")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_tiers_on_threads_never_over_admit_with_either_clock() {
    use palisade_rate_limit::Clock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    for clock in [Clock::tokio(), Clock::quanta()] {
        for algorithm in [
            Algorithm::TokenBucket,
            Algorithm::SlidingWindowLog,
            Algorithm::SlidingWindowCounter,
            Algorithm::FixedWindow,
        ] {
            let (limit, period) = (20u32, ms(40));
            let tight = Quota::new(limit, period);
            let layer = RateLimitLayer::builder()
                .algorithm(algorithm)
                .clock(clock.clone())
                .tier(Tier::keyed(tight, |_: &u32| Some(1u8)).name("per_key"))
                .tier(Tier::new(Quota::new(limit * 4, period)).name("global"))
                .build()
                .unwrap();
            let passed = Arc::new(AtomicU64::new(0));
            let counter = passed.clone();
            let svc = layer.layer(tower::service_fn(move |_: u32| {
                counter.fetch_add(1, Ordering::Relaxed);
                std::future::ready(Ok::<_, std::convert::Infallible>(()))
            }));
            let start = Instant::now();
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        for i in 0..1_500u32 {
                            let _ = svc.clone().oneshot(i).await;
                            if i % 16 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let elapsed = start.elapsed();
            let passed = passed.load(Ordering::Relaxed);
            let bound = match algorithm {
                Algorithm::TokenBucket => {
                    u64::from(limit)
                        + (elapsed.as_nanos() / (period.as_nanos() / u128::from(limit))) as u64
                        + 1
                }
                // Windows aligned to the limiter's start: those begun within `elapsed`, plus
                // the one running when the measure started.
                _ => u64::from(limit) * ((elapsed.as_nanos() / period.as_nanos()) as u64 + 2),
            };
            assert!(passed > 0);
            assert!(
                passed <= bound,
                "{clock:?} {algorithm:?}: {passed} passed in {elapsed:?}, bound {bound}"
            );
        }
    }
}

#[cfg(not(loom))]
mod across_changes {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        /// Cost and wait (ms; 0 refuses at once).
        Ask(u32, u64),
        SetQuota(u32, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..300).prop_map(Op::Advance),
            6 => (1u32..3, prop_oneof![Just(0u64), 1u64..2_000]).prop_map(|(c, w)| Op::Ask(c, w)),
            1 => (1u32..5, prop_oneof![Just(7u64), 10u64..3_000]).prop_map(|(l, p)| Op::SetQuota(l, p)),
        ]
    }

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::TokenBucket),
            (0u32..3).prop_map(|queue| Algorithm::LeakyBucket { queue }),
            Just(Algorithm::SlidingWindowLog),
            Just(Algorithm::SlidingWindowCounter),
            Just(Algorithm::FixedWindow),
        ]
    }

    fn ask(limiter: &RateLimiter, cost: u32, wait: u64) -> Result<(), Denied> {
        if wait == 0 {
            limiter.try_acquire(cost)
        } else {
            limiter.reserve(cost, ms(wait)).map(|_| ())
        }
    }

    fn run(algorithm: Algorithm, ops: &[Op]) -> Result<(), TestCaseError> {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let limiter = RateLimiter::new(algorithm, Quota::new(2, ms(500)).burst(2)).unwrap();
            for op in ops {
                match *op {
                    Op::Advance(n) => advance(ms(n)).await,
                    Op::SetQuota(limit, period) => {
                        let _ = limiter.set_quota(Quota::new(limit, ms(period)).burst(limit));
                    }
                    Op::Ask(cost, wait) => {
                        let Err(Denied::RetryAfter(after)) = ask(&limiter, cost, wait) else { continue };
                        prop_assert!(after > Duration::ZERO);
                        advance(after.saturating_sub(NS)).await;
                        prop_assert!(
                            ask(&limiter, cost, wait).is_err(),
                            "cost {cost}, wait {wait} ms: admitted {after:?} - 1 ns after its refusal"
                        );
                        advance(NS).await;
                        let again = ask(&limiter, cost, wait);
                        prop_assert!(
                            again.is_ok(),
                            "cost {cost}, wait {wait} ms: {again:?} {after:?} after its refusal"
                        );
                    }
                }
            }
            Ok(())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        /// Kinds 4 and 5 together: whatever quota changes came before (longer and shorter
        /// periods, higher and lower limits, callers booked across them), a refusal's
        /// `retry_after` is exact for the same request (weight, wait), every algorithm.
        #[test]
        fn retry_after_stays_exact_across_quota_changes(
            algorithm in algorithm(),
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            run(algorithm, &ops)?;
        }
    }
}

#[cfg(not(loom))]
mod waiting {
    use super::*;
    use proptest::prelude::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::TokenBucket),
            (0u32..4).prop_map(|queue| Algorithm::LeakyBucket { queue }),
            Just(Algorithm::SlidingWindowLog),
            Just(Algorithm::SlidingWindowCounter),
            Just(Algorithm::FixedWindow),
        ]
    }

    type Call = Pin<Box<dyn Future<Output = Result<u32, palisade_core::BoxError>> + Send>>;

    #[allow(clippy::too_many_arguments)]
    fn run(
        algorithm: Algorithm,
        limit: u32,
        period: u64,
        wait: u64,
        keyed: bool,
        weights: &[u32],
        gaps: &[u64],
        change: Option<(usize, u32, u64)>,
    ) -> Result<(), TestCaseError> {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let quota = Quota::new(limit, ms(period)).burst(limit);
            let builder = RateLimitLayer::builder().algorithm(algorithm).when_full(WhenFull::wait(ms(wait)));
            // Unweighted and global: admission in `poll_ready` (the other path).
            let weighted = keyed || weights.iter().any(|&w| w > 1);
            let builder = if weighted { builder.weight(|w: &u32| *w) } else { builder };
            let builder = if keyed {
                builder.tier(Tier::keyed(quota, |_: &u32| Some(0u8)))
            } else {
                builder.tier(Tier::new(quota))
            };
            let layer = builder.build().unwrap();
            let handle = layer.handle();
            let svc = layer.layer(Echo);
            let mut waiting = Vec::new();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for (i, &w) in weights.iter().enumerate() {
                // A sleep, not `advance`: the waiting callers' timers fire in order meanwhile.
                tokio::time::sleep(ms(gaps.get(i).copied().unwrap_or(0))).await;
                if let Some((_, limit, period)) = change.filter(|c| c.0 == i) {
                    let tier = if keyed { "per_key" } else { "global" };
                    handle.set_quota(tier, Quota::new(limit, ms(period)).burst(limit)).unwrap();
                }
                let mut call: Call = Box::pin(svc.clone().oneshot(w));
                // A caller that cannot be admitted within its wait is refused at once.
                if let Poll::Ready(result) = call.as_mut().poll(&mut cx) {
                    drop(result);
                    continue;
                }
                let started = Instant::now();
                waiting.push(tokio::spawn(async move {
                    let result = call.await.map_err(|e| e.to_string());
                    (Instant::now() - started, result)
                }));
            }
            for task in waiting {
                let (held, result) = task.await.unwrap();
                prop_assert!(
                    result.is_ok(),
                    "a caller held {held:?} (max_wait {wait} ms) and then refused: {result:?}"
                );
                prop_assert!(held <= ms(wait), "held {held:?}, past its max_wait");
            }
            Ok(())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        /// Kinds 4 and 5, wait mode, one tier (global or keyed), weights, every algorithm, a
        /// quota change through the handle while callers wait: a caller is either refused at
        /// once or admitted within `max_wait` — never held and then refused, never held
        /// longer.
        #[test]
        fn a_waiting_caller_is_never_held_to_be_refused(
            algorithm in algorithm(),
            limit in 1u32..5,
            period in 20u64..1_000,
            wait in 1u64..1_500,
            keyed in any::<bool>(),
            weights in prop_oneof![
                proptest::collection::vec(1u32..4, 1..40),
                proptest::collection::vec(Just(1u32), 1..40),
            ],
            gaps in proptest::collection::vec(prop_oneof![3 => Just(0u64), 1 => 0u64..200], 0..40),
            change in prop::option::of((0usize..40, 1u32..5, 10u64..1_500)),
        ) {
            run(algorithm, limit, period, wait, keyed, &weights, &gaps, change)?;
        }
    }
}
