#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! Fuzzing the service pool's builder and serde config (the resource pool's are in
//! palisade-resource-pool's `tests/extremes.rs`) with extreme values (issue 15,
//! kind 8): each setting is 0, 1, a few, huge or `MAX`; durations `ZERO`, 1 ns, …,
//! palisade's far future, `Duration::MAX`; ratios NaN, ±∞, negative, above one. Every
//! combination must give a `ConfigError` naming a real field, or a pool that serves calls
//! without panicking or hanging (on a paused clock: a hang is an `Elapsed` after an hour of
//! virtual time, a panic fails the test or answers `Closed`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::time::FAR_FUTURE;
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use palisade_pool::{make_fn, Pool, PoolBuilder, Strategy as Dispatch};
use proptest::prelude::*;
use tokio::sync::Semaphore;
use tower::ServiceExt;

const HOUR: Duration = Duration::from_secs(3600);

const EXTREME_SIZES: [usize; 7] = [0, 1, 2, 3, 4_294_967_295, Semaphore::MAX_PERMITS, usize::MAX];

/// Any size, extreme ones included.
fn size() -> impl Strategy<Value = usize> {
    prop::sample::select(EXTREME_SIZES.to_vec())
}

/// `(min, max)`: mostly ordered (so that most cases build and the pool is exercised),
/// sometimes anything.
fn min_max() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        4 => size().prop_flat_map(|max| (prop::sample::select(vec![0, 1, 2, max.min(4096), max]), Just(max))),
        1 => (size(), size()),
    ]
}

/// Mostly a valid ratio, sometimes NaN, ±∞, negative or above one.
fn ratio(valid: Vec<f64>) -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => prop::sample::select(valid),
        1 => prop::sample::select(vec![-0.0, 2.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE]),
    ]
}

const DURATIONS: [Duration; 7] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_millis(1),
    Duration::from_secs(1),
    Duration::from_secs(86_400 * 365 * 100),
    FAR_FUTURE,
    Duration::MAX,
];

/// Any duration, `ZERO` one time in seven.
fn duration() -> impl Strategy<Value = Duration> {
    prop::sample::select(DURATIONS.to_vec())
}

/// `(base, max)` of the make backoff: mostly ordered.
fn backoff() -> impl Strategy<Value = (Duration, Duration)> {
    prop_oneof![
        4 => duration().prop_flat_map(|base| {
            let later: Vec<_> = DURATIONS.iter().copied().filter(|d| *d >= base).collect();
            (Just(base), prop::sample::select(later))
        }),
        1 => (duration(), duration()),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0, 1, u32::MAX])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

fn assert_names_a_field(err: &ConfigError, fields: &[&str]) {
    assert!(fields.contains(&err.field()), "unexpected field in {err:?}");
    assert!(!err.rule().is_empty());
}

// === Pool ===

const SERVICE_FIELDS: &[&str] = &[
    "min_size",
    "max_size",
    "member_concurrency",
    "max_queue",
    "scale_up_utilisation",
    "scale_down_utilisation",
    "scale_down_after",
    "housekeeping_interval",
    "idle_timeout",
    "make_timeout",
    "make_backoff",
    "health_check",
    "peak_ewma_decay",
];

#[derive(Clone, Debug)]
struct ServiceSettings {
    /// min, max, member_concurrency, max_queue, scale_up_queue
    sizes: (usize, usize, usize, usize, usize),
    /// scale_down_utilisation, scale_up_utilisation
    ratios: (f64, f64),
    /// scale_down_after, housekeeping_interval, make_backoff, make_backoff_max,
    /// peak-EWMA rtt and decay
    durations: (Duration, Duration, Duration, Duration, Duration, Duration),
    /// idle_timeout, make_timeout, health_check
    options: (Option<Duration>, Option<Duration>, Option<Duration>),
    failures: u32,
    strategy: u8,
    /// `None`: refuse when full; else wait up to this long.
    wait: Option<Duration>,
}

fn queue() -> impl Strategy<Value = usize> {
    prop_oneof![4 => prop::sample::select(vec![1, 2, 64, Semaphore::MAX_PERMITS]), 1 => size()]
}

fn service_settings() -> impl Strategy<Value = ServiceSettings> {
    (
        (min_max(), size(), queue(), size()),
        (ratio(vec![0.0, 0.2, 0.5]), ratio(vec![0.5, 0.8, 1.0])),
        (duration(), duration(), backoff(), duration(), duration()),
        (prop::option::of(duration()), prop::option::of(duration()), prop::option::of(duration())),
        count(),
        0u8..4,
        prop::option::of(duration()),
    )
        .prop_map(
            |(
                ((min, max), concurrency, queue, up_queue),
                ratios,
                durations,
                options,
                failures,
                strategy,
                wait,
            )| {
                let (after, housekeeping, (backoff, backoff_max), rtt, decay) = durations;
                ServiceSettings {
                    sizes: (min, max, concurrency, queue, up_queue),
                    ratios,
                    durations: (after, housekeeping, backoff, backoff_max, rtt, decay),
                    options,
                    failures,
                    strategy,
                    wait,
                }
            },
        )
}

fn strategy(n: u8) -> Dispatch {
    match n {
        0 => Dispatch::RoundRobin,
        1 => Dispatch::LeastInFlight,
        2 => Dispatch::PowerOfTwoChoices,
        _ => Dispatch::PeakEwma,
    }
}

fn service_builder(s: &ServiceSettings) -> PoolBuilder<u32> {
    let (min, max, concurrency, queue, up_queue) = s.sizes;
    let (after, housekeeping, backoff, backoff_max, rtt, decay) = s.durations;
    let (idle, make_timeout, health) = s.options;
    let mut b = Pool::builder()
        .min_size(min)
        .max_size(max)
        .member_concurrency(concurrency)
        .max_queue(queue)
        .scale_up_queue(up_queue)
        .scale_up_utilisation(s.ratios.1)
        .scale_down(s.ratios.0, after)
        .housekeeping_interval(housekeeping)
        .make_backoff(backoff, backoff_max)
        .peak_ewma(rtt, decay)
        .evict_after_failures(s.failures)
        .strategy(strategy(s.strategy))
        .when_full(s.wait.map_or(WhenFull::Refuse, WhenFull::wait))
        .seed(7);
    if let Some(d) = idle {
        b = b.idle_timeout(d);
    }
    if let Some(d) = make_timeout {
        b = b.make_timeout(d);
    }
    if let Some(d) = health {
        b = b.health_check(d, || 0);
    }
    b
}

/// Builds over members answering each `u32` with itself, then checks that it serves.
async fn serves(builder: PoolBuilder<u32>) {
    let made = Arc::new(AtomicU64::new(0));
    let m = made.clone();
    let built = builder.build(make_fn(move || {
        m.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok::<_, BoxError>(tower::service_fn(|x: u32| {
            std::future::ready(Ok::<_, BoxError>(x))
        })))
    }));
    let pool = match built {
        Ok(pool) => pool,
        Err(err) => return assert_names_a_field(&err, SERVICE_FIELDS),
    };
    for n in 0..3 {
        let answer = tokio::time::timeout(HOUR, pool.clone().oneshot(n)).await;
        assert_eq!(answer.expect("a call was never answered").unwrap(), n);
        tokio::task::yield_now().await;
    }
    let batch =
        tokio::time::timeout(HOUR, pool.submit_batch(10..14)).await.expect("a batch was never answered");
    assert_eq!(batch.into_iter().map(Result::unwrap).collect::<Vec<_>>(), vec![10, 11, 12, 13]);
    let report = tokio::time::timeout(HOUR, pool.handle().shutdown(Duration::from_secs(1)))
        .await
        .expect("shutdown never finished");
    assert!(report.drained, "{report:?}");
    assert!(made.load(Ordering::Relaxed) >= 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pool_service_builder_refuses_or_serves(s in service_settings()) {
        runtime().block_on(serves(service_builder(&s)));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn pool_service_config_refuses_or_serves(s in service_settings()) {
        let (min, max, concurrency, queue, up_queue) = s.sizes;
        let (after, housekeeping, backoff, backoff_max, rtt, decay) = s.durations;
        let (idle, make_timeout, _) = s.options;
        let mut config = palisade_pool::PoolConfig::default();
        config.min_size = min;
        config.max_size = max;
        config.member_concurrency = concurrency;
        config.max_queue = queue;
        config.scale_up_queue = up_queue;
        config.scale_up_utilisation = s.ratios.1;
        config.scale_down_utilisation = s.ratios.0;
        config.scale_down_after = after;
        config.housekeeping_interval = housekeeping;
        config.make_backoff = backoff;
        config.make_backoff_max = backoff_max;
        config.peak_ewma_default_rtt = rtt;
        config.peak_ewma_decay = decay;
        config.idle_timeout = idle;
        config.make_timeout = make_timeout;
        config.evict_after_failures = s.failures;
        config.strategy = strategy(s.strategy);
        config.when_full = s.wait.map_or(WhenFull::Refuse, WhenFull::wait);
        match config.validate().map(|()| config.into_builder::<u32>()) {
            Ok(builder) => runtime().block_on(serves(builder)),
            Err(err) => assert_names_a_field(&err, SERVICE_FIELDS),
        }
    }
}

/// Serde configs as text, with the durations the issue names (`"200000000000000d"`).
#[cfg(feature = "serde")]
#[test]
fn json_configs_with_extreme_values_refuse_or_serve() {
    let sizes = ["0", "1", "4294967295", "18446744073709551615"];
    let durations = ["\"0s\"", "\"1ns\"", "\"1ms\"", "\"200000000000000d\""];
    for size in sizes {
        for duration in durations {
            let json = format!(
                r#"{{ "max_size": {size}, "max_queue": {size}, "member_concurrency": {size},
                     "scale_down_after": {duration}, "housekeeping_interval": {duration},
                     "idle_timeout": {duration}, "make_timeout": {duration} }}"#
            );
            let config: palisade_pool::PoolConfig = serde_json::from_str(&json).unwrap();
            match config.validate().map(|()| config.into_builder::<u32>()) {
                Ok(builder) => runtime().block_on(serves(builder)),
                Err(err) => assert_names_a_field(&err, SERVICE_FIELDS),
            }
        }
    }
}
