#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 15.8: every builder setting and every serde field with extreme values gives a
//! `ConfigError`, or a layer that serves calls without panicking or hanging (paused clock,
//! every call bounded).

use std::time::Duration;

#[cfg(feature = "serde")]
use palisade_circuit_breaker::CircuitBreakerConfig;
use palisade_circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, CircuitState};
use palisade_core::BoxError;
use proptest::prelude::*;
use tower::{service_fn, Layer, Service, ServiceExt};

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(5)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(86_400 * 365 * 100)),
        Just(Duration::MAX),
    ]
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(f64::MIN_POSITIVE),
        Just(0.5),
        Just(1.0),
        Just(1.5),
        Just(1e300),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(100),
        Just(1_048_575),
        Just(1_048_576),
        Just(65_536),
        Just(u32::MAX)
    ]
}

fn state() -> impl Strategy<Value = CircuitState> {
    prop_oneof![
        Just(CircuitState::Closed),
        Just(CircuitState::Open),
        Just(CircuitState::HalfOpen),
        Just(CircuitState::ForcedOpen),
        Just(CircuitState::Disabled),
        Just(CircuitState::MetricsOnly),
    ]
}

/// One builder setting.
#[derive(Clone, Copy, Debug)]
enum Set {
    Consecutive(u32),
    FailureCount(u32, Duration),
    FailureRate(f64),
    CountWindow(u32),
    TimeWindow(Duration),
    Buckets(u32),
    MinimumCalls(u32),
    Slow(Duration, f64),
    Wait(Duration),
    Exponential(Duration, f64, Duration),
    Trials(u32),
    TrialRatio(f64),
    RetryAfter(Duration),
    Measure(bool),
    MaxWaitHalfOpen(Duration),
    AllTrials(bool),
    Auto(bool),
    Initial(CircuitState),
}

fn setting() -> impl Strategy<Value = Set> {
    prop_oneof![
        count().prop_map(Set::Consecutive),
        (count(), duration()).prop_map(|(n, d)| Set::FailureCount(n, d)),
        ratio().prop_map(Set::FailureRate),
        count().prop_map(Set::CountWindow),
        duration().prop_map(Set::TimeWindow),
        count().prop_map(Set::Buckets),
        count().prop_map(Set::MinimumCalls),
        (duration(), ratio()).prop_map(|(d, r)| Set::Slow(d, r)),
        duration().prop_map(Set::Wait),
        (duration(), ratio(), duration()).prop_map(|(a, m, b)| Set::Exponential(a, m, b)),
        count().prop_map(Set::Trials),
        ratio().prop_map(Set::TrialRatio),
        duration().prop_map(Set::RetryAfter),
        any::<bool>().prop_map(Set::Measure),
        duration().prop_map(Set::MaxWaitHalfOpen),
        any::<bool>().prop_map(Set::AllTrials),
        any::<bool>().prop_map(Set::Auto),
        state().prop_map(Set::Initial),
    ]
}

fn apply(b: CircuitBreakerBuilder, s: Set) -> CircuitBreakerBuilder {
    match s {
        Set::Consecutive(n) => b.consecutive_failures(n),
        Set::FailureCount(n, d) => b.failure_count(n, d),
        Set::FailureRate(r) => b.failure_rate(r),
        Set::CountWindow(n) => b.count_window(n),
        Set::TimeWindow(d) => b.time_window(d),
        Set::Buckets(n) => b.time_window_buckets(n),
        Set::MinimumCalls(n) => b.minimum_calls(n),
        Set::Slow(d, r) => b.slow_calls(d, r),
        Set::Wait(d) => b.wait_in_open(d),
        Set::Exponential(a, m, max) => b.exponential_wait_in_open(a, m, max),
        Set::Trials(n) => b.half_open_trials(n),
        Set::TrialRatio(r) => b.half_open_failure_ratio(r),
        Set::RetryAfter(d) => b.open_on_retry_after(d),
        Set::Measure(on) => b.measure_call_duration(on),
        Set::MaxWaitHalfOpen(d) => b.max_wait_in_half_open(d),
        Set::AllTrials(on) => b.wait_for_all_trials(on),
        Set::Auto(on) => b.automatic_transition_to_half_open(on),
        Set::Initial(s) => b.initial_state(s),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// Drives calls (failing, succeeding, slow) and clock jumps, huge ones included, through
/// `svc`; every call must end (a timeout on the paused clock catches a hang).
async fn serve<S>(svc: S, script: &[(bool, u8)])
where
    S: Service<(bool, u8), Response = (), Error = BoxError> + Clone,
{
    for &(fail, jump) in script {
        let call = svc.clone().oneshot((fail, jump));
        let res = tokio::time::timeout(Duration::from_secs(3600), call).await;
        assert!(res.is_ok(), "a call hung");
        match jump % 4 {
            0 => {}
            1 => tokio::time::advance(Duration::from_millis(u64::from(jump))).await,
            2 => tokio::time::advance(Duration::from_secs(u64::from(jump))).await,
            _ => tokio::time::advance(Duration::from_secs(86_400 * 365)).await,
        }
    }
}

fn backend() -> impl Service<(bool, u8), Response = (), Error = &'static str, Future: Send> + Clone {
    service_fn(|(fail, delay): (bool, u8)| async move {
        if delay % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
        }
        if fail {
            Err("boom")
        } else {
            Ok(())
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_builder_gives_an_error_or_a_working_breaker(
        settings in proptest::collection::vec(setting(), 0..6),
        script in proptest::collection::vec((any::<bool>(), any::<u8>()), 0..24),
        keyed in any::<bool>(),
        max_keys in prop_oneof![Just(0usize), Just(1), Just(3), Just(1_000_000_000), Just(1_000_000_001), Just(usize::MAX)],
    ) {
        runtime().block_on(async {
            let mut b = CircuitBreakerLayer::builder();
            for s in settings {
                b = apply(b, s);
            }
            if keyed {
                match b.keyed(|r: &(bool, u8)| Some(r.1 % 4)).max_keys(max_keys).build() {
                    Err(e) => assert!(!e.to_string().is_empty()),
                    Ok(layer) => {
                        let handle = layer.handle();
                        serve(layer.layer(backend()), &script).await;
                        assert!(handle.len() <= handle.capacity());
                        handle.sweep();
                    }
                }
            } else {
                match b.build() {
                    Err(e) => assert!(!e.to_string().is_empty()),
                    Ok(layer) => {
                        let handle = layer.handle();
                        serve(layer.layer(backend()), &script).await;
                        let _ = handle.snapshot();
                        handle.open_for(Duration::MAX);
                        handle.reset();
                        serve(layer.layer(backend()), &script).await;
                    }
                }
            }
        });
    }

    #[cfg(feature = "serde")]
    #[test]
    fn any_serde_config_gives_an_error_or_a_working_breaker(
        fields in proptest::collection::vec((0usize..20, 0usize..8), 0..8),
        script in proptest::collection::vec((any::<bool>(), any::<u8>()), 0..16),
    ) {
        const NAMES: [&str; 20] = [
            "consecutive_failures", "failure_count", "failure_rate", "count_window", "time_window",
            "time_window_buckets", "minimum_calls", "slow_call_duration", "slow_call_rate",
            "wait_in_open", "wait_multiplier", "max_wait_in_open", "half_open_trials",
            "half_open_failure_ratio", "max_retry_after", "max_keys", "max_wait_in_half_open",
            "wait_for_all_trials", "automatic_transition_to_half_open", "initial_state",
        ];
        const VALUES: [&str; 8] = [
            "0", "1", "4294967295", "18446744073709551615", "-1", "0.5", "\"0s\"", "\"200000000000000d\"",
        ];
        let mut json = serde_json::Map::new();
        for (f, v) in fields {
            let value: serde_json::Value = match NAMES[f] {
                "wait_for_all_trials" | "automatic_transition_to_half_open" => serde_json::Value::Bool(v % 2 == 0),
                "initial_state" => serde_json::Value::String(["closed", "open", "half_open", "forced_open", "disabled", "metrics_only", "nope", ""][v].to_owned()),
                _ => serde_json::from_str(VALUES[v]).unwrap(),
            };
            json.insert(NAMES[f].to_owned(), value);
        }
        let Ok(config) = serde_json::from_value::<CircuitBreakerConfig>(serde_json::Value::Object(json)) else {
            return Ok(()); // refused by serde: a type error, fine
        };
        runtime().block_on(async {
            match config.build() {
                Err(e) => assert!(!e.to_string().is_empty()),
                Ok(layer) => serve(layer.layer(backend()), &script).await,
            }
        });
    }
}
