//! Review of wave 5's rate-limit changes (5c): the fast clock's readings against tokio's,
//! reservations across changes of period, new keys after forgetting.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use palisade_rate_limit::{Algorithm, Quota};
use tokio::time::advance;

#[cfg(feature = "quanta")]
const ALL: [Algorithm; 5] = [
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket { queue: 4 },
    Algorithm::SlidingWindowLog,
    Algorithm::SlidingWindowCounter,
    Algorithm::FixedWindow,
];

/// `RateLimiter::reserve` with the fast clock when it and tokio's have drifted apart (the
/// time-stamp counter and the monotonic clock drift by parts per million: seconds a day;
/// here a mocked quanta clock and tokio's paused one advanced apart). The instant returned
/// is a tokio instant to sleep until: it must be `now` plus the limiter's wait, as every
/// layer path carries it (`ready_after`). Before, it was the limiter's absolute time mapped
/// onto tokio's origin: with the fast clock 5 s ahead a free slot was dated 5 s in the
/// future (a wait of 5 s where `max_wait` was zero); with it 5 s behind, a slot one second
/// away was dated 4 s in the past and the caller went at once, a second early.
#[cfg(feature = "quanta")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reserve_carries_the_limiters_wait_from_tokios_now() {
    use palisade_rate_limit::{Clock, RateLimiter};
    use tokio::time::Instant;
    for algorithm in ALL {
        for ahead in [true, false] {
            let (clock, mock) = quanta::Clock::mock();
            mock.increment(Duration::from_secs(1_000));
            let limiter = RateLimiter::builder(Quota::new(1, Duration::from_secs(1)).burst(1))
                .algorithm(algorithm)
                .clock(Clock::from_quanta(clock))
                .build()
                .unwrap();
            if ahead {
                mock.increment(Duration::from_secs(5));
            } else {
                advance(Duration::from_secs(5)).await;
            }
            let now = Instant::now();
            let first = limiter.reserve(1, Duration::ZERO).unwrap();
            assert_eq!(first, now, "{algorithm:?} ahead {ahead}: a free slot is now");
            let second = limiter.reserve(1, Duration::from_secs(2)).unwrap();
            let wait = second.saturating_duration_since(now);
            // the next slot: one second on the limiter's clock (the counter's estimate
            // frees it a little later: at most the whole window)
            assert!(
                second >= now + Duration::from_millis(990) && wait <= Duration::from_secs(2),
                "{algorithm:?} ahead {ahead}: the second slot at +{wait:?} (before now: {})",
                second < now
            );
        }
    }
}

mod extreme {
    //! Several tiers (global and keyed, each its own algorithm) with extreme quotas,
    //! weights and waits, changed at run time, with time jumping far: every call is
    //! answered without a panic or a hang (the refusal across tiers asks the later tiers
    //! with `probe`, new in wave 5, which the single-tier fuzzing never reached).
    use super::*;
    use palisade_core::when_full::WhenFull;
    use palisade_rate_limit::{RateLimitLayer, Tier};
    use proptest::prelude::*;
    use support::Echo;
    use tower::{Layer, ServiceExt};

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            1 => Just(Duration::ZERO),
            1 => Just(Duration::from_nanos(1)),
            1 => Just(Duration::from_millis(1)),
            1 => Just(Duration::from_secs(1)),
            1 => Just(Quota::MAX_PERIOD),
            1 => Just(Duration::from_secs(u64::MAX)),
            1 => Just(Duration::MAX),
            1 => any::<u64>().prop_map(Duration::from_nanos),
            6 => (1_000u64..10_000_000_000).prop_map(Duration::from_nanos),
        ]
    }

    fn count() -> impl Strategy<Value = u32> {
        prop_oneof![
            1 => Just(0u32),
            1 => Just(1),
            1 => Just(2),
            1 => Just(7),
            1 => Just(u32::MAX - 1),
            1 => Just(u32::MAX),
            1 => any::<u32>(),
            6 => 1u32..20,
        ]
    }

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::TokenBucket),
            count().prop_map(|queue| Algorithm::LeakyBucket { queue }),
            Just(Algorithm::SlidingWindowLog),
            Just(Algorithm::SlidingWindowCounter),
            Just(Algorithm::FixedWindow),
        ]
    }

    fn quota() -> impl Strategy<Value = Quota> {
        (count(), duration(), prop::option::of(count())).prop_map(|(limit, period, burst)| {
            let q = Quota::new(limit, period);
            burst.map_or(q, |b| q.burst(b))
        })
    }

    /// How long a call may take before it counts as hung (paused clock: no real time).
    const PATIENCE: Duration = Duration::from_secs(3600);

    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn several_extreme_tiers_answer_every_call(
            tiers in prop::collection::vec((algorithm(), quota(), any::<bool>(), 1usize..4), 2..4),
            wait in prop::option::of(duration()),
            weight in prop::option::of(count()),
            steps in prop::collection::vec((0u32..8, prop::option::of(duration()), prop::option::of((0usize..3, quota()))), 1..12),
        ) {
            let mut builder = RateLimitLayer::builder();
            let mut leaky = false;
            for (i, (algorithm, quota, keyed, max_keys)) in tiers.iter().enumerate() {
                leaky |= matches!(algorithm, Algorithm::LeakyBucket { .. });
                let tier = if *keyed {
                    Tier::keyed(*quota, |r: &u32| Some(*r % 3)).max_keys(*max_keys)
                } else {
                    Tier::new(*quota)
                };
                builder = builder.tier(tier.algorithm(*algorithm).name(format!("t{i}")));
            }
            if let Some(w) = wait {
                builder = builder.when_full(WhenFull::wait(w));
            }
            if let Some(w) = weight {
                builder = builder.weight(move |r: &u32| if *r % 2 == 0 { w } else { 1 });
            }
            let may_wait = wait.is_some_and(|w| w >= PATIENCE) || leaky;
            paused().block_on(async {
                let Ok(layer) = builder.build() else { return };
                let handle = layer.handle();
                let svc = layer.layer(Echo);
                for (req, jump, change) in steps {
                    let call = svc.clone().oneshot(req);
                    if tokio::time::timeout(PATIENCE, call).await.is_err() {
                        assert!(may_wait, "call {req} hung");
                    }
                    if let Some(jump) = jump {
                        // at most ~100 years at once: tokio's own clock would overflow past that
                        advance(jump.min(Duration::from_secs(100 * 365 * 86_400))).await;
                    }
                    if let Some((tier, quota)) = change {
                        let _ = handle.set_quota(&format!("t{tier}"), quota);
                    }
                    let _ = handle.snapshot();
                    for tier in handle.tiers() {
                        let _ = tier.status();
                        let _ = tier.status_of(&(req % 3));
                    }
                }
                let _ = handle.sweep();
            });
        }
    }
}

/// The layer's `admitted` count (a `StripedCounter`: a stripe per thread, handed back when
/// the thread ends) is exact once the callers are joined, whatever threads counted: more
/// threads than owned stripes, threads ending and new ones taking their stripes, each with
/// its own runtime, and two layers counted by the same threads. It equals the calls the
/// inner services saw, and with the refusals, every attempt.
#[test]
fn the_admitted_count_is_exact_across_threads_that_come_and_go() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tower::{service_fn, Layer, ServiceExt};
    const ATTEMPTS: u64 = 400;

    let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let layers = [
        palisade_rate_limit::RateLimitLayer::<u32>::new(Quota::new(u32::MAX, Duration::from_secs(1))),
        // refuses most: admitted and rejected both move
        palisade_rate_limit::RateLimitLayer::<u32>::new(Quota::new(1_000, Duration::from_secs(3_600))),
    ];
    let mut threads_total = 0u64;
    for round in 0..6 {
        let threads: Vec<_> = (0..(3 + 2 * round))
            .map(|_| {
                let layers = layers.clone();
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
                    rt.block_on(async {
                        for _ in 0..ATTEMPTS {
                            for (i, layer) in layers.iter().enumerate() {
                                let seen = seen.clone();
                                let svc = layer.layer(service_fn(move |r: u32| {
                                    seen[i].fetch_add(1, Ordering::Relaxed);
                                    async move { Ok::<_, std::convert::Infallible>(r) }
                                }));
                                let _ = svc.oneshot(1).await;
                            }
                        }
                    });
                })
            })
            .collect();
        threads_total += threads.len() as u64;
        for t in threads {
            t.join().unwrap();
        }
    }
    for (i, layer) in layers.iter().enumerate() {
        let s = layer.handle().snapshot();
        assert_eq!(s.admitted, seen[i].load(Ordering::Relaxed), "layer {i}: {s:?}");
        assert_eq!(s.admitted + s.rejected, threads_total * ATTEMPTS, "layer {i}: {s:?}");
    }
    assert_eq!(layers[0].handle().snapshot().admitted, threads_total * ATTEMPTS);
    assert_eq!(layers[1].handle().snapshot().admitted, 1_000);
}

/// A store with room forgets nothing, so a new key there is a fresh key: a request whose
/// reading was taken before another key's (read before a lock, applied after) is admitted
/// as by a store that never forgets. Before, every new key raised the store's "forgotten
/// at" time, forgotten or not, and a new key started there: with a burst of 1 (the default
/// of `Quota::per_second(1)`), a brand-new client whose reading was a millisecond older than
/// another new client's was refused (`retry_after` 1 ms) on its very first request (under
/// load, any new key whose clock reading another thread's new key overtook).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_new_key_in_a_store_with_room_is_a_fresh_key() {
    use palisade_rate_limit::store::KeyedStore;
    use palisade_rate_limit::KeyedRateLimiter;
    use tokio::time::Instant;
    for algorithm in [Algorithm::TokenBucket, Algorithm::LeakyBucket { queue: 0 }] {
        let store = KeyedRateLimiter::<&str>::builder()
            .algorithm(algorithm)
            .quota(Quota::per_second(1))
            .max_keys(3)
            .build_store()
            .unwrap();
        let t0 = Instant::now();
        advance(Duration::from_millis(1)).await;
        assert!(store.acquire(&"a", 1, Instant::now(), None).is_ok());
        // b's reading predates a's: nothing was forgotten, b is fresh
        assert!(store.acquire(&"b", 1, t0, None).is_ok(), "{algorithm:?}: a fresh key refused");
    }
    // Once a full store forgets keys, a reading older than that is never decided as a key
    // with no past: a and c (one a second, burst 1) admitted at 0 fill a store of 2; at 1.5 s
    // b forgets both; a request for a whose reading is 0.5 s is refused (the old a would
    // have refused it too: its bucket was empty until 1 s).
    for algorithm in [Algorithm::TokenBucket, Algorithm::LeakyBucket { queue: 0 }] {
        let store = KeyedRateLimiter::<&str>::builder()
            .algorithm(algorithm)
            .quota(Quota::per_second(1))
            .max_keys(2)
            .build_store()
            .unwrap();
        let t0 = Instant::now();
        assert!(store.acquire(&"a", 1, t0, None).is_ok());
        assert!(store.acquire(&"c", 1, t0, None).is_ok());
        advance(Duration::from_millis(1_500)).await;
        assert!(store.acquire(&"b", 1, Instant::now(), None).is_ok());
        assert_eq!(store.keys(), 1, "{algorithm:?}: a and c forgotten");
        let stale = store.acquire(&"a", 1, t0 + Duration::from_millis(500), None);
        assert!(stale.is_err(), "{algorithm:?}: a forgotten key decided as one with no past");
    }
}
