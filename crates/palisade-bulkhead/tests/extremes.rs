//! Issue 15 kind 8: every bulkhead and adaptive-limit builder and serde config, with
//! extreme values (0, 1, MAX, `Duration::ZERO`/`MAX`, NaN/∞/negative ratios), gives either a
//! `ConfigError` or a layer that serves calls without panicking or hanging (paused clock,
//! bounded virtual time). The same holds for run-time changes through the handles.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use palisade_bulkhead::adaptive::{Aimd, Fixed, Gradient2, LimitAlgorithm, Vegas};
use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
use palisade_core::BoxError;
use palisade_core::WhenFull;
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};

const MAX_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        // Ordinary values, often enough that most layers build and serve.
        6 => 1..40usize,
        1 => Just(0),
        1 => Just(1),
        1 => Just(2),
        1 => Just(3),
        1 => Just(20),
        1 => Just(MAX_PERMITS),
        1 => Just(MAX_PERMITS + 1),
        1 => Just(u32::MAX as usize),
        1 => Just(usize::MAX - 1),
        1 => Just(usize::MAX),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(palisade_core::time::FAR_FUTURE),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
    ]
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.5..1.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-1.0),
        1 => Just(-0.0),
        1 => Just(0.0),
        1 => Just(f64::MIN_POSITIVE),
        1 => Just(0.1),
        1 => Just(0.5),
        1 => Just(0.9),
        1 => Just(1.0),
        1 => Just(1.5),
        1 => Just(2.0),
        1 => Just(f64::MAX),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// What a call may end with: an answer, or one of the layer's refusals.
fn acceptable(result: &Result<(), BoxError>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            support::reason(e).is_some() || support::is_overloaded(e) || e.to_string() == "inner failure"
        }
    }
}

/// Runs `calls` concurrent calls (every third failing in the inner service) through
/// `svc`, on a paused clock; all must end within a virtual hour.
fn serve<S>(svc: S, calls: usize)
where
    S: Service<usize, Response = (), Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    runtime().block_on(async move {
        let tasks: Vec<_> = (0..calls).map(|i| tokio::spawn(svc.clone().oneshot(i))).collect();
        let all = async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("a call panicked"));
            }
            out
        };
        let results = tokio::time::timeout(Duration::from_secs(3600), all).await.expect("a call hung");
        for r in &results {
            assert!(acceptable(r), "unexpected outcome {r:?}");
        }
    });
}

fn inner(latency: Duration) -> impl Service<usize, Response = (), Error = BoxError, Future: Send> + Clone {
    tower::service_fn(move |i: usize| async move {
        tokio::time::sleep(latency).await;
        if i % 3 == 2 {
            Err::<(), BoxError>("inner failure".into())
        } else {
            Ok(())
        }
    })
}

fn latency() -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), Just(Duration::from_millis(3)), Just(Duration::from_secs(2))]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bulkhead_builder_extremes(
        max_concurrent in size(),
        max_queue in proptest::option::of(size()),
        max_wait in proptest::option::of(duration()),
        shed_inner in any::<bool>(),
        resize in proptest::option::of(size()),
        new_wait in proptest::option::of(proptest::option::of(duration())),
        latency in latency(),
    ) {
        let mut b = BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(max_concurrent);
        if let Some(q) = max_queue {
            b = b.max_queue(q);
        }
        if let Some(w) = max_wait {
            b = b.when_full(WhenFull::wait(w));
        }
        if shed_inner {
            b = b.shed_when_inner_not_ready();
        }
        let layer = match b.build() {
            Ok(layer) => layer,
            Err(e) => {
                prop_assert_eq!(e.field(), "max_concurrent");
                prop_assert!(max_concurrent == 0 || max_concurrent > MAX_PERMITS);
                return Ok(());
            }
        };
        let h = layer.handle();
        if let Some(n) = resize {
            // 0 is the run-time drain switch (as Resilience4j accepts maxConcurrentCalls 0);
            // above tokio's MAX_PERMITS is refused.
            prop_assert_eq!(h.set_max_concurrent(n).is_ok(), n <= MAX_PERMITS);
            if n == 0 {
                prop_assert_eq!(h.max_concurrent(), 0);
                // Drained: open it again so the calls below can be served.
                prop_assert!(h.set_max_concurrent(1).is_ok());
            }
        }
        if let Some(w) = new_wait {
            h.set_when_full(w.map_or(WhenFull::wait(Duration::MAX), WhenFull::wait));
        }
        serve(layer.layer(inner(latency)), 6);
        prop_assert_eq!(h.in_flight(), 0);
        prop_assert_eq!(h.queued(), 0);
    }

    #[test]
    fn adaptive_builder_extremes(
        kind in 0..4u8,
        initial in size(),
        min in size(),
        max in size(),
        r1 in ratio(),
        r2 in ratio(),
        d in duration(),
        window in size(),
        partitions in proptest::collection::vec(ratio(), 0..3),
        backlog in proptest::option::of((size(), duration())),
        set_limit in proptest::option::of(size()),
        set_bounds in proptest::option::of((size(), size())),
        latency in latency(),
        ordered in any::<bool>(),
    ) {
        // Half the time min ≤ initial ≤ max, so that extreme values get to serve calls.
        let (min, initial, max) = if ordered {
            let mut v = [min, initial, max];
            v.sort_unstable();
            (v[0], v[1], v[2])
        } else {
            (min, initial, max)
        };
        let algorithm: Box<dyn LimitAlgorithm> = match kind {
            0 => Box::new(Aimd::default().initial_limit(initial).min_limit(min).max_limit(max).backoff_ratio(r1).timeout(d)),
            1 => Box::new(
                Vegas::default()
                    .initial_limit(initial)
                    .min_limit(min)
                    .max_limit(max)
                    .smoothing(r1)
                    .probe_multiplier(window)
                    .alpha(window)
                    .beta(initial)
                    .seed(1),
            ),
            2 => Box::new(
                Gradient2::default()
                    .initial_limit(initial)
                    .min_limit(min)
                    .max_limit(max)
                    .smoothing(r1)
                    .rtt_tolerance(r2)
                    .drop_backoff(r2)
                    .queue_size(window)
                    .long_window(window),
            ),
            _ => Box::new(Fixed::new(initial)),
        };
        let mut b = AdaptiveLimitLayer::builder().algorithm(algorithm);
        let names = ["a", "b", "c"];
        for (name, r) in names.iter().zip(&partitions) {
            b = b.partition(*name, *r);
        }
        if let Some((len, wait)) = backlog {
            b = b.when_full(WhenFull::wait(wait)).max_queue(len);
        }
        let built = if partitions.is_empty() {
            b.build().map(|l| (l.handle(), tower::util::BoxCloneService::new(l.layer(inner(latency)))))
        } else {
            b.partition_by(move |i: &usize| names[i % 4 % 3])
                .build()
                .map(|l| (l.handle(), tower::util::BoxCloneService::new(l.layer(inner(latency)))))
        };
        let (h, svc) = match built {
            Ok(x) => x,
            Err(e) => {
                prop_assert!(!e.field().is_empty() && !e.rule().is_empty());
                return Ok(());
            }
        };
        if let Some(n) = set_limit {
            let _ = h.set_limit(n);
        }
        if let Some((lo, hi)) = set_bounds {
            let _ = h.set_bounds(lo, hi);
        }
        prop_assert!(h.limit() >= 1);
        serve(svc, 8);
        prop_assert_eq!(h.in_flight(), 0);
        prop_assert_eq!(h.backlog(), 0);
    }
}

#[cfg(feature = "serde")]
mod serde_configs {
    use super::*;
    use palisade_bulkhead::adaptive::AdaptiveLimitConfig;
    use palisade_bulkhead::BulkheadConfig;

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (1..40usize).prop_map(|n| n.to_string()),
            1 => Just("0".to_owned()),
            1 => Just("1".to_owned()),
            1 => Just("4294967295".to_owned()),
            1 => Just(MAX_PERMITS.to_string()),
            1 => Just(usize::MAX.to_string()),
            1 => Just("-1".to_owned()),
        ]
    }

    fn float() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0.5..1.0f64).prop_map(|f| f.to_string()),
            1 => Just("0".to_owned()),
            1 => Just("0.5".to_owned()),
            1 => Just("1".to_owned()),
            1 => Just("1.5".to_owned()),
            1 => Just("-1".to_owned()),
            1 => Just("1e308".to_owned()),
            1 => Just("-1e308".to_owned()),
        ]
    }

    fn text_duration() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"0s\"".to_owned()),
            Just("\"1ns\"".to_owned()),
            Just("\"5ms\"".to_owned()),
            Just("\"200000000000000d\"".to_owned()),
            Just("\"18446744073709551615s\"".to_owned()),
            Just("\"99999999999999999999999999999999999d\"".to_owned()),
        ]
    }

    fn serve_bulkhead(config: &str) {
        let Ok(config) = serde_json::from_str::<BulkheadConfig>(config) else { return };
        let Ok(layer) = config.into_builder().build() else { return };
        let h = layer.handle();
        serve(layer.layer(inner(Duration::from_millis(3))), 6);
        assert_eq!(h.in_flight(), 0);
    }

    fn serve_adaptive(config: &str) {
        let Ok(config) = serde_json::from_str::<AdaptiveLimitConfig>(config) else { return };
        let Ok(layer) = config.into_builder().build() else { return };
        let h = layer.handle();
        serve(layer.layer(inner(Duration::from_millis(3))), 8);
        assert_eq!(h.in_flight(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn bulkhead_config_extremes(
            max_concurrent in number(),
            max_queue in number(),
            max_wait in text_duration(),
            shed in any::<bool>(),
        ) {
            serve_bulkhead(&format!(
                r#"{{ "max_concurrent": {max_concurrent}, "max_queue": {max_queue}, "when_full": {{ "wait": {max_wait} }}, "shed_when_inner_not_ready": {shed} }}"#
            ));
        }

        #[test]
        fn adaptive_config_extremes(
            kind in 0..3u8,
            a in number(),
            b in number(),
            c in number(),
            f in float(),
            g in float(),
            d in text_duration(),
            len in number(),
        ) {
            let algorithm = match kind {
                0 => format!(r#"{{ "aimd": {{ "initial_limit": {a}, "min_limit": {b}, "max_limit": {c}, "backoff_ratio": {f}, "timeout": {d} }} }}"#),
                1 => format!(r#"{{ "vegas": {{ "initial_limit": {a}, "min_limit": {b}, "max_limit": {c}, "smoothing": {f}, "probe_multiplier": {a}, "alpha": {b}, "beta": {c} }} }}"#),
                _ => format!(r#"{{ "gradient2": {{ "initial_limit": {a}, "min_limit": {b}, "max_limit": {c}, "smoothing": {f}, "rtt_tolerance": {g}, "drop_backoff": {g}, "queue_size": {a}, "long_window": {b} }} }}"#),
            };
            serve_adaptive(&format!(
                r#"{{ "algorithm": {algorithm}, "when_full": {{ "wait": {d} }}, "max_queue": {len} }}"#
            ));
        }
    }
}

/// The inputs of issue 15 as plain regression tests.
#[test]
fn issue_15_inputs() {
    // `max_concurrent(usize::MAX)` is a ConfigError (tokio's semaphore holds `usize::MAX >> 3`).
    let err = BulkheadLayer::builder().max_concurrent(usize::MAX).build().unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    // `max_wait(Duration::MAX)` and an unbounded queue serve.
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_queue(usize::MAX)
        .when_full(WhenFull::wait(Duration::MAX))
        .build()
        .unwrap();
    serve(layer.layer(inner(Duration::from_millis(1))), 4);
    // A backlog of `usize::MAX` callers waiting `Duration::MAX` allocates nothing up front and serves.
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Fixed::new(1))
        .when_full(WhenFull::wait(Duration::MAX))
        .max_queue(usize::MAX)
        .build()
        .unwrap();
    serve(layer.layer(inner(Duration::from_millis(1))), 4);
}
