//! Issue 15 for the chaos layer: huge delays saturate, generators and listeners that panic
//! fail one call only, and every builder, serde config and handle setter either refuses
//! extreme values with a `ConfigError` or gives a layer that serves.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_chaos::{ChaosBuilder, ChaosConfig, ChaosEvent, ChaosLayer, InjectedFault, Panicked};
use palisade_core::BoxError;
use proptest::prelude::*;
use tokio_test::{assert_pending, task};
use tower::{service_fn, Layer, Service, ServiceExt};

/// A bound on a paused clock: a hang shows up as this timeout, at once.
const HANG_GUARD: Duration = Duration::from_secs(3600);

/// An inner service answering `n + 1` and counting its calls.
fn counted() -> (Arc<AtomicUsize>, impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone)
{
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let svc = service_fn(move |n: u32| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(n + 1) }
    });
    (calls, svc)
}

fn hook_panic(err: &BoxError) -> &Panicked {
    err.downcast_ref::<Panicked>().unwrap_or_else(|| panic!("not a hook panic: {err}"))
}

async fn check_hook(builder: ChaosBuilder<u32, u32>, message: &str, site: &str) {
    let layer = builder.name("hooks").seed(7).build().unwrap();
    let (calls, inner) = counted();
    let svc = layer.layer(inner);
    // Request 3 makes the hook panic: that call alone fails, without calling the inner service.
    let err = svc.clone().oneshot(3).await.unwrap_err();
    let panicked = hook_panic(&err);
    assert_eq!((panicked.name(), panicked.message()), ("hooks", message));
    assert_eq!((panicked.component(), panicked.site()), ("hook", Some(site)));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The layer goes on.
    let next = svc.clone().oneshot(4).await;
    assert!(!next.as_ref().is_err_and(|e| e.is::<Panicked>()), "{next:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_predicate_fails_that_call_only() {
    let b = ChaosLayer::builder().fault_rate(1.0).inject_when(|n: &u32| {
        assert!(*n != 3, "predicate bug");
        true
    });
    check_hook(b, "predicate bug", "inject_when").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_fault_generator_fails_that_call_only() {
    let b = ChaosLayer::builder().fault_rate(1.0).fault_with(|n: &u32| {
        assert!(*n != 3, "fault bug");
        InjectedFault::new("custom")
    });
    check_hook(b, "fault bug", "fault_with").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_outcome_generator_fails_that_call_only() {
    let b = ChaosLayer::builder().outcome_rate(1.0).outcome_with(|n: &u32| {
        assert!(*n != 3, "outcome bug");
        *n * 10
    });
    check_hook(b, "outcome bug", "outcome_with").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_latency_generator_fails_that_call_only() {
    let b = ChaosLayer::builder().latency_rate(1.0).latency_with(|n: &u32| {
        assert!(*n != 3, "latency bug");
        Duration::from_millis(5)
    });
    check_hook(b, "latency bug", "latency_with").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_listener_misses_its_event_and_nothing_else() {
    let layer = ChaosLayer::<u32, u32>::builder()
        .fault_rate(1.0)
        .on_event(|_: &ChaosEvent| panic!("listener bug"))
        .build()
        .unwrap();
    layer.handle().on_event(|_: &ChaosEvent| panic!("handle listener bug"));
    let (_, inner) = counted();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(err.is::<InjectedFault>());
    assert_eq!(layer.handle().snapshot().faults, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_injected_delay_saturates_instead_of_panicking() {
    for layer in [
        ChaosLayer::<u32, u32>::builder().latency_rate(1.0).latency(Duration::MAX).build().unwrap(),
        ChaosLayer::builder().latency_rate(1.0).latency_with(|_: &u32| Duration::MAX).build().unwrap(),
    ] {
        let (calls, inner) = counted();
        let mut call = task::spawn(layer.layer(inner).oneshot(1));
        assert_pending!(call.poll());
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert_pending!(call.poll(), "still waiting a year later: effectively never");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
    let handle = ChaosLayer::<u32, u32>::builder().build().unwrap().handle();
    handle.set_latency(Duration::MAX).unwrap();
    handle.set_latency_rate(1.0).unwrap();
}

// === extreme configs: a ConfigError, or a layer that serves ===

fn rates() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(0.5),
        Just(f64::MIN_POSITIVE),
        Just(f64::EPSILON),
        Just(1.0 + f64::EPSILON),
        Just(-1.0),
        Just(f64::MAX),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ]
}

fn latencies() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        Just(Some(Duration::ZERO)),
        Just(Some(Duration::from_nanos(1))),
        Just(Some(Duration::from_secs(1))),
        Just(Some(Duration::from_secs(u64::MAX))),
        Just(Some(Duration::MAX)),
    ]
}

const FIELDS: &[&str] = &["fault_rate", "outcome_rate", "latency_rate", "hang_rate", "latency"];

/// Serves one call through `layer` on a paused clock and checks the answer is one the
/// settings allow; a call that does not end must be an injected hang or a huge delay.
fn serves(layer: &ChaosLayer<u32, u32>, huge_latency: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async {
        let (_, inner) = counted();
        let answer = tokio::time::timeout(HANG_GUARD, layer.layer(inner).oneshot(1)).await;
        let snapshot = layer.handle().snapshot();
        match answer {
            Err(_elapsed) => prop_assert!(snapshot.hangs == 1 || (huge_latency && snapshot.latencies == 1)),
            Ok(Ok(v)) => prop_assert!(v == 2 || (v == 10 && snapshot.outcomes == 1), "{}", v),
            Ok(Err(e)) => prop_assert!(e.is::<InjectedFault>() && snapshot.faults == 1, "{}", e),
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn builders_refuse_or_serve(
        fault in rates(), outcome in rates(), latency_rate in rates(), hang in rates(),
        latency in latencies(), seed in any::<u64>(), with_outcome in any::<bool>(),
    ) {
        let mut b = ChaosLayer::<u32, u32>::builder()
            .seed(seed)
            .fault_rate(fault)
            .outcome_rate(outcome)
            .latency_rate(latency_rate)
            .hang_rate(hang);
        if let Some(l) = latency { b = b.latency(l); }
        if with_outcome { b = b.outcome_with(|_| 10); }
        match b.build() {
            Err(e) => prop_assert!(FIELDS.contains(&e.field()), "{}", e),
            Ok(layer) => serves(&layer, latency.is_some_and(|l| l >= HANG_GUARD))?,
        }
    }

    #[test]
    fn handle_setters_refuse_or_serve(
        fault in rates(), outcome in rates(), latency_rate in rates(), hang in rates(),
        latency in latencies(), seed in any::<u64>(),
    ) {
        let layer = ChaosLayer::<u32, u32>::builder().seed(seed).outcome_with(|_| 10).build().unwrap();
        let h = layer.handle();
        for result in [
            h.set_fault_rate(fault),
            h.set_outcome_rate(outcome),
            latency.map_or(Ok(()), |l| h.set_latency(l)),
            h.set_latency_rate(latency_rate),
            h.set_hang_rate(hang),
        ] {
            if let Err(e) = result {
                prop_assert!(FIELDS.contains(&e.field()), "{}", e);
            }
        }
        let rates = h.rates();
        for r in [rates.fault, rates.outcome, rates.latency, rates.hang] {
            prop_assert!((0.0..=1.0).contains(&r));
        }
        serves(&layer, h.latency() >= HANG_GUARD)?;
    }

    #[test]
    fn serde_configs_refuse_or_serve(
        fault in rates(), latency_rate in rates(), hang in rates(),
        latency in latencies(), seed in any::<u64>(),
    ) {
        // JSON has no NaN or infinity: those cannot reach a config file.
        let finite = |r: f64| if r.is_finite() { r } else { 2.0 };
        let json = serde_json::json!({
            "seed": seed,
            "fault_rate": finite(fault),
            "latency_rate": finite(latency_rate),
            "hang_rate": finite(hang),
            "latency": latency.map(|d| format!("{}s{}ns", d.as_secs(), d.subsec_nanos())),
        });
        let config: ChaosConfig = serde_json::from_value(json).unwrap();
        match config.build::<u32, u32>() {
            Err(e) => prop_assert!(FIELDS.contains(&e.field()), "{}", e),
            Ok(layer) => serves(&layer, latency.is_some_and(|l| l >= HANG_GUARD))?,
        }
    }
}
