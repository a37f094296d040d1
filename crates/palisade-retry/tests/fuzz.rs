#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 15 kinds 1, 2 and 8 for palisade-retry: every builder and serde config, fed extreme
//! values, gives a `ConfigError` or a layer that serves calls without panicking or hanging
//! (paused clock, every call bounded by a timeout far in the future).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;
use palisade_retry::hedge::{HedgeLayer, HedgeMode};
use palisade_retry::{Backoff, Jitter, RetryBudget, RetryLayer};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(86_400 * 365 * 1000)),
        Just(Duration::MAX),
        (0u64..10_000).prop_map(Duration::from_millis),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(0.5),
        Just(1.0),
        Just(2.0),
        Just(1e308),
        0.0f64..2000.0,
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(2), Just(5), Just(u32::MAX), 0u32..10]
}

/// Fails `failures` times (with `CircuitOpen` or a plain error), then answers.
fn flaky(
    failures: u32,
    open: bool,
) -> impl Service<u32, Response = u32, Error = BoxError, Future = std::future::Ready<Result<u32, BoxError>>> + Clone
{
    let calls = Arc::new(AtomicU32::new(0));
    tower::service_fn(move |req: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n < failures {
            if open {
                Err(palisade_core::rejection::CircuitOpen::new("b", Duration::MAX).into())
            } else {
                Err("flaky".into())
            }
        } else {
            Ok(req)
        })
    })
}

/// Runs one call, bounded: the paused clock jumps over any sleep, and a timeout of a
/// century ends a layer that would wait for ever (which is allowed: "effectively never").
async fn serve<S: Service<u32, Response = u32, Error = BoxError>>(svc: S) {
    let _ = tokio::time::timeout(Duration::from_secs(86_400 * 365 * 100), svc.oneshot(7)).await;
}

fn budget() -> impl Strategy<Value = Option<(u8, Duration, u32, f64)>> {
    prop::option::of((0u8..3, duration(), count(), float()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn retry_builder_never_panics_or_hangs(
        (max_attempts, base, step, multiplier, kind) in (count(), duration(), duration(), float(), 0u8..5),
        (jitter, percent, max_delay, cap_after, no_cap) in (0u8..6, any::<u8>(), duration(), any::<bool>(), any::<bool>()),
        (max_retry_after, attempt_timeout, deadline, wait, exhausted) in
            (duration(), prop::option::of(duration()), prop::option::of(duration()), prop::option::of(duration()), any::<bool>()),
        (budget, failures, open) in (budget(), 0u32..4, any::<bool>()),
    ) {
        let backoff = match kind {
            0 => Backoff::fixed(base),
            1 => Backoff::linear(base, step),
            2 => Backoff::exponential_with(base, multiplier),
            3 => Backoff::fibonacci(base),
            _ => Backoff::custom(move |n| step.saturating_mul(n)),
        };
        let jitter = match jitter {
            0 => Jitter::None,
            1 => Jitter::Full,
            2 => Jitter::Equal,
            3 => Jitter::Decorrelated,
            _ => Jitter::Proportional { percent },
        };
        let mut b = RetryLayer::builder()
            .max_attempts(max_attempts)
            .backoff(backoff)
            .jitter(jitter)
            .max_delay(max_delay)
            .cap_after_jitter(cap_after)
            .max_retry_after(max_retry_after)
            .retries_exhausted_error(exhausted)
            .seed(1);
        if no_cap {
            b = b.no_max_delay();
        }
        if let Some(t) = attempt_timeout {
            b = b.attempt_timeout(t);
        }
        if let Some(d) = deadline {
            b = b.deadline(d);
        }
        if let Some(w) = wait {
            b = b.wait_for_half_open(w);
        }
        if let Some((kind, ttl, n, ratio)) = budget {
            let built = match kind {
                0 => Ok(RetryBudget::unlimited()),
                1 => RetryBudget::ratio(ttl, n, ratio),
                _ => RetryBudget::token_bucket(n, ratio),
            };
            match built {
                Ok(budget) => b = b.budget(budget),
                Err(e) => prop_assert!(e.field().starts_with("budget."), "{e}"),
            }
        }
        if let Ok(layer) = b.build() {
            rt().block_on(serve(layer.layer(flaky(failures, open))));
        }
    }

    #[test]
    fn hedge_builder_never_panics_or_hangs(
        max_attempts in count(),
        delay in duration(),
        mode in 0u8..4,
        percentile in float(),
        min_samples in count(),
        failures in 0u32..4,
    ) {
        let b = HedgeLayer::builder().max_attempts(max_attempts).budget(RetryBudget::unlimited());
        let b = match mode {
            0 => b.delay(delay),
            1 => b.mode(HedgeMode::Percentile { percentile, fallback: delay, min_samples }),
            2 => b.parallel(),
            _ => b.fallback(),
        };
        if let Ok(layer) = b.build() {
            let rt = rt();
            for _ in 0..3 {
                rt.block_on(serve(layer.layer(flaky(failures, false))));
            }
        }
    }
}

/// Issue 15.1's inputs, as given.
#[test]
fn huge_timeouts_from_builders_and_serde_do_not_panic() {
    let rt = rt();
    rt.block_on(async {
        let huge = Duration::from_secs(200_000_000_000_000 * 86_400); // "200000000000000d"
        let layer = RetryLayer::builder()
            .attempt_timeout(huge)
            .deadline(Duration::MAX)
            .max_delay(Duration::MAX)
            .max_retry_after(Duration::MAX)
            .wait_for_half_open(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(layer.layer(flaky(1, false)).oneshot(3).await.unwrap(), 3);
    });
}

/// Issue 15.2: nothing is sized from the config: a hedge cannot ask for more attempts in
/// flight than it can hold, and a retry with `u32::MAX` attempts allocates nothing up front.
#[test]
fn sizes_from_the_config_are_bounded() {
    assert!(HedgeLayer::builder().max_attempts(u32::MAX).build().is_err());
    let layer = RetryLayer::builder().max_attempts(u32::MAX).build().unwrap();
    rt().block_on(async {
        assert_eq!(layer.layer(flaky(3, false)).oneshot(1).await.unwrap(), 1);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn throttle_builder_never_panics(k in float(), window in duration(), failures in 0u32..4) {
        let built = palisade_retry::AdaptiveThrottle::builder().k(k).window(window).seed(3).build();
        match built {
            Err(e) => prop_assert!(e.field().starts_with("throttle."), "{e}"),
            Ok(throttle) => {
                let layer = RetryLayer::builder().throttle(throttle).build().unwrap();
                let rt = rt();
                for _ in 0..3 {
                    rt.block_on(serve(layer.layer(flaky(failures, false))));
                }
            }
        }
    }
}

#[cfg(feature = "serde")]
mod serde_configs {
    use super::*;
    use palisade_retry::RetryConfig;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn serde_config_never_panics_or_hangs(
        fields in prop::collection::vec((0usize..10, 0usize..12), 0..8),
        failures in 0u32..4,
    ) {
        const VALUES: [&str; 12] = [
            "\"0s\"", "\"1ns\"", "\"1ms\"", "\"250ms\"", "\"200000000000000d\"", "\"18446744073709551615s\"",
            "0", "1", "4294967295", "-1", "1e308", "\"garbage\"",
        ];
        const NAMES: [&str; 10] = [
            "max_attempts", "max_delay", "max_retry_after", "attempt_timeout", "deadline",
            "wait_for_half_open", "seed", "jitter", "cap_after_jitter", "retries_exhausted_error",
        ];
        let mut seen = std::collections::HashSet::new();
        let body: Vec<String> = fields
            .into_iter()
            .filter(|(n, _)| seen.insert(*n))
            .map(|(n, v)| format!("\"{}\": {}", NAMES[n], VALUES[v]))
            .collect();
        let json = format!("{{{}}}", body.join(", "));
        if let Ok(config) = serde_json::from_str::<RetryConfig>(&json) {
            if let Ok(layer) = config.build() {
                rt().block_on(serve(layer.layer(flaky(failures, false))));
            }
        }
    }

    #[test]
    fn serde_backoff_and_budget_never_panic(
        base in prop_oneof![Just("0s"), Just("1ns"), Just("200000000000000d"), Just("5ms")],
        multiplier in float(),
        ttl in prop_oneof![Just("0s"), Just("1s"), Just("60s"), Just("200000000000000d")],
        per_sec in count(),
        ratio in float(),
        percent in any::<u8>(),
    ) {
        let num = |f: f64| if f.is_finite() { format!("{f:?}") } else { "1e999".to_owned() };
        for json in [
            format!(r#"{{"backoff": {{"exponential": {{"base": "{base}", "multiplier": {}}}}}, "jitter": {{"proportional": {{"percent": {percent}}}}}}}"#, num(multiplier)),
            format!(r#"{{"backoff": {{"linear": {{"initial": "{base}", "step": "{base}"}}}}, "max_delay": "{base}"}}"#),
            format!(r#"{{"budget": {{"ratio": {{"ttl": "{ttl}", "min_per_sec": {per_sec}, "ratio": {}}}}}}}"#, num(ratio)),
            format!(r#"{{"budget": {{"token_bucket": {{"max_tokens": {per_sec}, "token_ratio": {}}}}}}}"#, num(ratio)),
        ] {
            if let Ok(config) = serde_json::from_str::<RetryConfig>(&json) {
                if let Ok(layer) = config.build() {
                    rt().block_on(serve(layer.layer(flaky(2, false))));
                }
            }
        }
    }
    }

    /// Issue 15.1's input as given: `{"attempt_timeout": "200000000000000d"}` (and the other
    /// durations) from serde build a layer whose first call does not panic.
    #[test]
    fn huge_durations_from_serde_do_not_panic() {
        rt().block_on(async {
            for field in ["attempt_timeout", "deadline", "max_delay", "max_retry_after", "wait_for_half_open"]
            {
                let config: RetryConfig =
                    serde_json::from_str(&format!(r#"{{"{field}": "200000000000000d"}}"#)).unwrap();
                let svc = config.build().unwrap().layer(flaky(1, false));
                assert_eq!(svc.oneshot(3).await.unwrap(), 3, "{field}");
            }
        });
    }
}
