#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! Fuzzing the resource pool's builder and serde config with extreme values (issue 15,
//! kind 8): each size is 0, 1, a few, huge or `MAX`; durations `ZERO`, 1 ns, …, palisade's
//! far future, `Duration::MAX`. Every combination must give a `ConfigError` naming a real
//! field, or a pool that lends without panicking or hanging (on a paused clock: a hang is an
//! `Elapsed` after an hour of virtual time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::rejection::{Overloaded, TimedOut};
use palisade_core::time::FAR_FUTURE;
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use palisade_resource_pool::{lifecycle_fn, LifecycleFn, ResourcePool, ResourcePoolBuilder};
use proptest::prelude::*;
use tokio::sync::Semaphore;

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

/// Refuse, or wait any duration.
fn when_full() -> impl Strategy<Value = WhenFull> {
    prop_oneof![1 => Just(WhenFull::Refuse), 4 => duration().prop_map(WhenFull::wait)]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

fn assert_names_a_field(err: &ConfigError, fields: &[&str]) {
    assert!(fields.contains(&err.field()), "unexpected field in {err:?}");
    assert!(!err.rule().is_empty());
}

const RESOURCE_FIELDS: &[&str] = &["min_size", "max_size", "idle_timeout"];

#[derive(Clone, Debug)]
struct ResourceSettings {
    min: usize,
    max: usize,
    when_full: Option<WhenFull>,
    idle_timeout: Option<Duration>,
}

fn resource_settings() -> impl Strategy<Value = ResourceSettings> {
    (min_max(), prop::option::of(when_full()), prop::option::of(duration())).prop_map(
        |((min, max), when_full, idle_timeout)| ResourceSettings { min, max, when_full, idle_timeout },
    )
}

#[derive(Clone, Default)]
struct Counts {
    destroyed: Arc<AtomicU64>,
}

fn lifecycle(counts: &Counts) -> LifecycleFn<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let destroyed = counts.destroyed.clone();
    lifecycle_fn(move || {
        let n = next.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, BoxError>(n) }
    })
    .recycle_if(|_: &mut u64| true)
    .on_destroy(move |_: u64| {
        destroyed.fetch_add(1, Ordering::Relaxed);
        async {}
    })
}

fn resource_builder(s: &ResourceSettings, counts: &Counts) -> ResourcePoolBuilder<LifecycleFn<u64>> {
    let mut b = ResourcePool::builder(lifecycle(counts)).min_size(s.min).max_size(s.max);
    if let Some(w) = s.when_full {
        b = b.when_full(w);
    }
    if let Some(d) = s.idle_timeout {
        b = b.idle_timeout(d);
    }
    b
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn lends(builder: ResourcePoolBuilder<LifecycleFn<u64>>, counts: &Counts) {
    let pool = match builder.build() {
        Ok(pool) => pool,
        Err(err) => return assert_names_a_field(&err, RESOURCE_FIELDS),
    };
    let max = pool.snapshot().max_size;
    for _ in 0..3 {
        let got = tokio::time::timeout(HOUR, pool.acquire()).await.expect("an acquire never answered");
        match got {
            Ok(first) => {
                if max >= 2 {
                    let second = tokio::time::timeout(HOUR, pool.acquire()).await.expect("never answered");
                    if let Err(e) = &second {
                        assert!(e.is::<TimedOut>() || e.is::<Overloaded>(), "{e}");
                    }
                }
                drop(first);
            }
            // A 1 ns wait may pass (or a refusing pool refuse) while the background refill
            // holds the place.
            Err(e) => assert!(e.is::<TimedOut>() || e.is::<Overloaded>(), "{e}"),
        }
        settle().await;
        assert!(pool.snapshot().total <= max);
    }
    pool.close().await;
    settle().await;
    let s = pool.snapshot();
    assert_eq!(s.total, 0, "{s:?}");
    assert_eq!(s.created, s.destroyed + s.detached + s.dropped, "{s:?}");
    assert_eq!(s.destroyed, counts.destroyed.load(Ordering::Relaxed), "{s:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn resource_pool_builder_refuses_or_lends(s in resource_settings()) {
        let counts = Counts::default();
        runtime().block_on(lends(resource_builder(&s, &counts), &counts));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn resource_pool_config_refuses_or_lends(s in resource_settings()) {
        let mut config = palisade_resource_pool::ResourcePoolConfig::default();
        config.min_size = s.min;
        config.max_size = s.max;
        if let Some(w) = s.when_full {
            config.when_full = w;
        }
        config.idle_timeout = s.idle_timeout;
        let counts = Counts::default();
        runtime().block_on(lends(config.into_builder(lifecycle(&counts)), &counts));
    }
}

/// Serde configs as text, with the durations the issue names (`"200000000000000d"`).
#[cfg(feature = "serde")]
#[test]
fn json_configs_with_extreme_values_refuse_or_lend() {
    let sizes = ["0", "1", "4294967295", "18446744073709551615"];
    let durations = ["\"0s\"", "\"1ns\"", "\"1ms\"", "\"200000000000000d\""];
    for size in sizes {
        for duration in durations {
            let json = format!(
                r#"{{ "min_size": 1, "max_size": {size}, "when_full": {{ "wait": {duration} }}, "idle_timeout": {duration} }}"#
            );
            let config: palisade_resource_pool::ResourcePoolConfig = serde_json::from_str(&json).unwrap();
            let counts = Counts::default();
            runtime().block_on(lends(config.into_builder(lifecycle(&counts)), &counts));
        }
    }
}
