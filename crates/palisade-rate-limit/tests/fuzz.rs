//! Issue 15, kinds 1, 2 and 8: whatever a builder or a serde config is given — 0, 1, MAX,
//! `Duration::ZERO`/`MAX`, huge durations — the result is a `ConfigError` or a layer that
//! serves calls without panicking or hanging (paused clock, bounded).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

#[cfg(feature = "serde")]
use std::fmt::Write as _;
use std::time::Duration;

use palisade_core::when_full::WhenFull;
use palisade_rate_limit::{Algorithm, KeyedRateLimiter, Quota, RateLimitLayer, RateLimiter, Tier};
use proptest::prelude::*;
use support::Echo;
use tower::{Layer, ServiceExt};

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Quota::MAX_PERIOD),
        Just(Quota::MAX_PERIOD + Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(2), Just(u32::MAX - 1), Just(u32::MAX), any::<u32>(), 0u32..100]
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

fn max_keys() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), Just(1), Just(2), Just(usize::MAX), any::<usize>()]
}

/// How long a call may take before it counts as hung (paused clock: no real time).
const PATIENCE: Duration = Duration::from_secs(3600);

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// Serves a few calls; a call may only outlast `PATIENCE` when the layer may wait longer
/// (wait mode, or a leaky bucket's queue).
async fn serve(layer: &RateLimitLayer<u32>, mode: WhenFull, algorithm: Algorithm) {
    let svc = layer.layer(Echo);
    for i in 0..4 {
        let call = svc.clone().oneshot(i);
        if tokio::time::timeout(PATIENCE, call).await.is_err() {
            let may_wait = matches!(mode, WhenFull::Wait { max_wait } if max_wait >= PATIENCE)
                || matches!(algorithm, Algorithm::LeakyBucket { .. });
            assert!(may_wait, "call {i} hung");
        }
    }
    let handle = layer.handle();
    let _ = handle.snapshot();
    for tier in handle.tiers() {
        let _ = tier.status();
        let _ = tier.status_of(&1u32);
    }
    let _ = handle.sweep();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_layer_builds_or_refuses_cleanly(
        algorithm in algorithm(),
        quota in quota(),
        keyed in any::<bool>(),
        max_keys in max_keys(),
        wait in prop::option::of(duration()),
        weight in prop::option::of(count()),
        new_quota in quota(),
    ) {
        let tier = if keyed {
            Tier::keyed(quota, |r: &u32| Some(*r % 3)).max_keys(max_keys)
        } else {
            Tier::new(quota)
        };
        let mut builder = RateLimitLayer::builder().algorithm(algorithm).tier(tier);
        if let Some(w) = wait {
            builder = builder.when_full(WhenFull::wait(w));
        }
        if let Some(w) = weight {
            builder = builder.weight(move |_: &u32| w);
        }
        let mode = wait.map_or(WhenFull::Refuse, |max_wait| WhenFull::Wait { max_wait });
        paused().block_on(async {
            match builder.build() {
                Err(e) => assert!(!e.field().is_empty()),
                Ok(layer) => {
                    serve(&layer, mode, algorithm).await;
                    let name = if keyed { "per_key" } else { "global" };
                    let _ = layer.handle().set_quota(name, new_quota);
                    serve(&layer, mode, algorithm).await;
                }
            }
        });
    }

    #[test]
    fn any_limiter_builds_or_refuses_cleanly(
        algorithm in algorithm(),
        quota in quota(),
        cost in count(),
        wait in duration(),
        max_keys in max_keys(),
        new_quota in quota(),
    ) {
        paused().block_on(async {
            if let Ok(limiter) = RateLimiter::builder(quota).algorithm(algorithm).build() {
                let _ = limiter.check();
                let _ = limiter.try_acquire(cost);
                let _ = limiter.reserve(cost, wait);
                let _ = limiter.status();
                let _ = limiter.set_quota(new_quota);
                tokio::time::advance(Duration::from_secs(1)).await;
                let _ = limiter.try_acquire(cost);
            }
            if let Ok(keyed) = KeyedRateLimiter::builder().algorithm(algorithm).quota(quota).max_keys(max_keys).build() {
                let _ = keyed.try_acquire_key(&1u8, cost);
                let _ = keyed.check_key(&2u8);
                let _ = keyed.status(&1u8);
                let _ = keyed.set_quota(new_quota);
                let _ = keyed.sweep();
            }
            let per_key = KeyedRateLimiter::builder()
                .algorithm(algorithm)
                .quota_by_key(move |_: &u8| quota)
                .max_keys(max_keys)
                .build();
            if let Ok(keyed) = per_key {
                let _ = keyed.try_acquire_key(&1u8, cost);
            }
        });
    }
}

#[cfg(feature = "serde")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_serde_config_builds_or_refuses_cleanly(
        limit in prop_oneof![Just(0u64), Just(1), Just(u64::from(u32::MAX)), Just(u64::from(u32::MAX) + 1), any::<u64>()],
        period in prop_oneof![Just("0s".to_owned()), Just("1ns".to_owned()), Just("1s".to_owned()), Just("200000000000000d".to_owned()), any::<u64>().prop_map(|n| format!("{n}ms")), any::<u64>().prop_map(|n| format!("{n}d"))],
        burst in prop::option::of(any::<u32>()),
        max_wait in prop::option::of(prop_oneof![Just("0s".to_owned()), Just("18446744073709551615s".to_owned()), Just("200000000000000d".to_owned())]),
        algorithm in prop_oneof![Just(r#""token_bucket""#.to_owned()), Just(r#""fixed_window""#.to_owned()), Just(r#""sliding_window_log""#.to_owned()), Just(r#""sliding_window_counter""#.to_owned()), any::<u32>().prop_map(|q| format!(r#"{{"leaky_bucket": {{"queue": {q}}}}}"#))],
    ) {
        let mut json = format!(r#"{{"quota": {{"limit": {limit}, "period": "{period}""#);
        if let Some(b) = burst {
            let _ = write!(json, r#", "burst": {b}"#);
        }
        let _ = write!(json, r#"}}, "algorithm": {algorithm}"#);
        if let Some(w) = &max_wait {
            let _ = write!(json, r#", "when_full": {{"wait": "{w}"}}"#);
        }
        json.push('}');
        let Ok(config) = serde_json::from_str::<palisade_rate_limit::RateLimitConfig>(&json) else {
            return Ok(()); // refused by the parser: fine
        };
        let mode = config.when_full;
        let algorithm = config.algorithm;
        paused().block_on(async {
            match config.build::<u32>() {
                Err(e) => assert!(!e.field().is_empty()),
                Ok(layer) => serve(&layer, mode, algorithm).await,
            }
        });
    }
}
