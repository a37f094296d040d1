//! A hostile review of the keyed shape's shared limit (issue 19): `Unkeyed::Shared` puts
//! every unkeyed request under one bucket, which a refund must reach (not the per-key
//! store) and which `set_quota` must change with the keys' quota.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use palisade_core::keyed::Unkeyed;
use palisade_core::when_full::WhenFull;
use palisade_rate_limit::{Quota, RateLimitLayer, RateLimited};
use support::{advance, ms, retry_after, Echo};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{Layer, ServiceExt};

type Req = Option<&'static str>;

fn shared(when_full: WhenFull) -> RateLimitLayer<Req> {
    RateLimitLayer::builder()
        .quota(Quota::per_second(1).burst(1))
        .keyed(|r: &Req| *r)
        .when_unkeyed(Unkeyed::Shared)
        .when_full(when_full)
        .build()
        .unwrap()
}

/// A waiting unkeyed request dropped before its slot gives the slot back to the shared
/// bucket: the next unkeyed request takes it (at 1 s, not 2 s). Keys are untouched.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_unkeyed_waiter_refunds_the_shared_bucket() {
    let layer = shared(WhenFull::wait(Duration::from_secs(5)));
    let svc = layer.layer(Echo);
    assert_eq!(svc.clone().oneshot(None).await.unwrap(), None);
    let mut waiting = task::spawn(svc.clone().oneshot(None));
    assert_pending!(waiting.poll());
    drop(waiting);

    let mut next = task::spawn(svc.clone().oneshot(None));
    assert_pending!(next.poll());
    // A key has its own bucket, full.
    assert_eq!(svc.clone().oneshot(Some("a")).await.unwrap(), Some("a"));
    advance(ms(999)).await;
    assert_pending!(next.poll());
    advance(ms(1)).await;
    assert_eq!(assert_ready!(next.poll()).unwrap(), None, "the refunded 1 s slot");
}

/// The shared bucket refuses with the shared bucket's `retry_after`, and `set_quota` on the
/// keyed tier changes the shared bucket too (a larger burst admits at once).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn set_quota_changes_the_shared_bucket() {
    let layer = shared(WhenFull::Refuse);
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    svc.clone().oneshot(None).await.unwrap();
    let err = svc.clone().oneshot(None).await.unwrap_err();
    assert!(err.is::<RateLimited>(), "{err}");
    assert_eq!(retry_after(&err), ms(1_000));
    // A refused unkeyed request took nothing from a key.
    svc.clone().oneshot(Some("a")).await.unwrap();

    let tier = handle.tiers().next().unwrap().name().to_owned();
    handle.set_quota(&tier, Quota::per_second(1).burst(3)).unwrap();
    advance(ms(1_000)).await;
    for _ in 0..3 {
        svc.clone().oneshot(None).await.unwrap();
    }
    assert!(svc.clone().oneshot(None).await.is_err(), "burst 3, not more");
}

/// A config written out reads back the same, whatever its numbers: any quota (sub-second
/// and odd periods, with or without a burst), every algorithm and any wait, the unbounded
/// `WhenFull::wait(Duration::MAX)` included.
#[cfg(feature = "serde")]
mod round_trip {
    use std::time::Duration;

    use palisade_core::keyed::Unkeyed;
    use palisade_core::when_full::WhenFull;
    use palisade_rate_limit::{Algorithm, Quota, RateLimitConfig, TierConfig};
    use proptest::prelude::*;

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0u64..=u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (1u64..10_000_000_000).prop_map(Duration::from_nanos),
            Just(Duration::MAX),
            Just(Duration::ZERO),
        ]
    }

    fn quota() -> impl Strategy<Value = Quota> {
        (1u32..=u32::MAX, 1u64..=Quota::MAX_PERIOD.as_nanos() as u64, proptest::option::of(1u32..=u32::MAX))
            .prop_map(|(limit, period, burst)| {
                let q = Quota::new(limit, Duration::from_nanos(period));
                match burst {
                    Some(b) => q.burst(b),
                    None => q,
                }
            })
    }

    proptest! {
        #[test]
        fn any_config_reads_back_the_same(
            quota in proptest::option::of(quota()),
            tier in proptest::option::of(quota()),
            algorithm in prop_oneof![
                Just(Algorithm::TokenBucket),
                Just(Algorithm::FixedWindow),
                Just(Algorithm::SlidingWindowCounter),
                Just(Algorithm::SlidingWindowLog),
                (0u32..=u32::MAX).prop_map(|queue| Algorithm::LeakyBucket { queue }),
            ],
            wait in proptest::option::of(duration()),
            max_keys in 0usize..=usize::MAX,
            when_unkeyed in prop_oneof![Just(Unkeyed::Reject), Just(Unkeyed::PassThrough), Just(Unkeyed::Shared)],
        ) {
            let mut config = RateLimitConfig::default();
            config.quota = quota;
            config.algorithm = algorithm;
            config.when_full = wait.map_or(WhenFull::Refuse, WhenFull::wait);
            config.max_keys = max_keys;
            config.when_unkeyed = when_unkeyed;
            config.tiers.extend(tier.map(TierConfig::new));
            let json = serde_json::to_string(&config).unwrap();
            let back: RateLimitConfig = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(back, config, "{}", json);
        }
    }
}
