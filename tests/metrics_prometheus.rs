#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(all(
    feature = "metrics",
    feature = "timeout",
    feature = "retry",
    feature = "circuit-breaker",
    feature = "bulkhead"
))]
//! Issue 18.4: metric names, labels and HELP lines as a real Prometheus exporter renders them.
//!
//! Each test scrapes its own `metrics-exporter-prometheus` recorder, installed for the test's
//! thread only (`metrics::with_local_recorder`), never globally: the tests of this binary
//! cannot see each other's metrics. The layers run on a current-thread runtime with paused
//! time, inside the recorder's scope.

use std::future::Future;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use palisade::bulkhead::BulkheadLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::retry::{Backoff, Jitter, RetryLayer};
use palisade::timeout::TimeoutLayer;
use palisade::BoxError;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// Runs `f` on a paused current-thread runtime with `recorder` as this thread's recorder.
fn run<Fut: Future<Output = ()>>(recorder: &PrometheusRecorder, f: impl FnOnce() -> Fut) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    metrics::with_local_recorder(recorder, || rt.block_on(f()));
}

/// The value of the series `metric{labels…}` in a scrape (labels in any order), if present.
fn value(scrape: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
        let (set, v) = rest.split_once("} ")?;
        let mut got: Vec<&str> = set.split(',').collect();
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        got.sort_unstable();
        want.sort();
        (got == want).then(|| v.trim().parse().unwrap())
    })
}

fn failing(
) -> impl Service<u32, Response = u32, Error = BoxError, Future = std::future::Ready<Result<u32, BoxError>>> + Clone
{
    service_fn(|_: u32| std::future::ready(Err::<u32, BoxError>("down".into())))
}

/// Every `palisade_*` family in the scrape has a `# HELP` line whose text is the catalog's,
/// and a `# TYPE` line of the catalog's kind.
fn assert_described(scrape: &str) {
    use palisade_core::metric::catalog;
    let families: std::collections::BTreeSet<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("palisade_"))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .map(|n| n.trim_end_matches("_sum").trim_end_matches("_count"))
        .collect();
    assert!(!families.is_empty(), "{scrape}");
    for family in families {
        let info = catalog::find(family).unwrap_or_else(|| panic!("{family} is not in the catalog"));
        assert!(scrape.contains(&format!("# HELP {family} {}\n", info.help)), "HELP of {family}:\n{scrape}");
        let kind = match info.kind {
            catalog::MetricKind::Counter => "counter",
            catalog::MetricKind::Gauge => "gauge",
            catalog::MetricKind::Histogram => "summary",
        };
        assert!(scrape.contains(&format!("# TYPE {family} {kind}\n")), "TYPE of {family}:\n{scrape}");
    }
}

#[test]
fn the_breaker_exports_its_state_by_name_and_its_calls_by_outcome() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    run(&recorder, || async {
        let breaker = CircuitBreakerLayer::builder()
            .name("payments")
            .consecutive_failures(2)
            .wait_in_open(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut svc = ServiceBuilder::new().layer(breaker).service(failing());
        for _ in 0..2 {
            assert!(svc.ready().await.unwrap().call(1).await.is_err());
        }
        // Open: refused.
        let refused = match svc.ready().await {
            Ok(svc) => svc.call(1).await.is_err(),
            Err(_) => true,
        };
        assert!(refused);
    });
    let scrape = handle.render();
    let state = |s| value(&scrape, "palisade_circuit_breaker_state", &[("name", "payments"), ("state", s)]);
    assert_eq!(state("open"), Some(1.0), "{scrape}");
    for other in ["closed", "half_open", "forced_open", "disabled", "metrics_only"] {
        assert_eq!(state(other), Some(0.0), "{other}: {scrape}");
    }
    let calls =
        |o| value(&scrape, "palisade_circuit_breaker_calls_total", &[("name", "payments"), ("outcome", o)]);
    assert_eq!(calls("failure"), Some(2.0), "{scrape}");
    assert_eq!(calls("rejected"), Some(1.0), "{scrape}");
    assert_eq!(calls("success"), Some(0.0), "{scrape}");
    assert_eq!(value(&scrape, "palisade_circuit_breaker_opened_total", &[("name", "payments")]), Some(1.0));
    // No metric name per outcome any more.
    assert!(!scrape.contains("palisade_circuit_breaker_failures_total"), "{scrape}");
    assert_described(&scrape);
}

#[test]
fn bulkhead_rejections_and_retry_give_ups_carry_a_reason_label() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    run(&recorder, || async {
        // One permit, refused at once when taken (the default): the second caller is refused.
        let bulkhead = BulkheadLayer::builder().name("db").max_concurrent(1).build().unwrap();
        let inner = service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
        let mut first = ServiceBuilder::new().layer(bulkhead.clone()).service(inner);
        let mut second = ServiceBuilder::new().layer(bulkhead).service(inner);
        first.ready().await.unwrap();
        let refused = match second.ready().await {
            Ok(svc) => svc.call(2).await.is_err(),
            Err(_) => true,
        };
        assert!(refused);
        assert_eq!(first.call(1).await.unwrap(), 1);

        let retry = RetryLayer::builder()
            .name("fetch")
            .max_attempts(2)
            .backoff(Backoff::fixed(Duration::from_millis(10)))
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let svc = ServiceBuilder::new().layer(retry).service(failing());
        assert!(svc.oneshot(1).await.is_err());
    });
    let scrape = handle.render();
    assert_eq!(
        value(&scrape, "palisade_bulkhead_rejected_total", &[("name", "db"), ("reason", "no_permit")]),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        value(&scrape, "palisade_bulkhead_rejected_total", &[("name", "db"), ("reason", "queue_full")]),
        Some(0.0),
        "every reason's series exists from the start: {scrape}"
    );
    let gave_up = |r| value(&scrape, "palisade_retry_gave_up_total", &[("name", "fetch"), ("reason", r)]);
    assert_eq!(gave_up("attempts_exhausted"), Some(1.0), "{scrape}");
    assert_eq!(gave_up("non_retryable"), Some(0.0), "{scrape}");
    assert!(!scrape.contains("palisade_bulkhead_rejected_no_permit_total"), "{scrape}");
    assert_described(&scrape);
}

/// Issue 18.4: the 504s of `TimeoutLayer` leave a trace.
#[test]
fn timeouts_are_counted() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    run(&recorder, || async {
        let timeout =
            TimeoutLayer::builder().name("upstream").timeout(Duration::from_millis(50)).build().unwrap();
        let slow = service_fn(|x: u32| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(x)
        });
        let svc = ServiceBuilder::new().layer(timeout).service(slow);
        assert!(svc.oneshot(1).await.is_err());
    });
    let scrape = handle.render();
    assert_eq!(
        value(&scrape, "palisade_timeout_timed_out_total", &[("name", "upstream")]),
        Some(1.0),
        "{scrape}"
    );
    assert_described(&scrape);
}

/// Issue 18.4: a recorder installed after the layers were built still receives their metrics
/// (and describes them). The layer is built with no recorder at all; the calls run with one.
#[test]
fn a_recorder_installed_after_the_layers_were_built_receives_their_metrics() {
    let breaker = CircuitBreakerLayer::builder()
        .name("late")
        .consecutive_failures(1)
        .wait_in_open(Duration::from_secs(10))
        .build()
        .unwrap();
    let bulkhead = BulkheadLayer::builder().name("late").max_concurrent(1).build().unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    assert!(!handle.render().contains("palisade_"), "nothing registered before the recorder");
    run(&recorder, || async move {
        let mut svc = ServiceBuilder::new().layer(bulkhead).layer(breaker).service(failing());
        assert!(svc.ready().await.unwrap().call(1).await.is_err());
    });
    let scrape = handle.render();
    assert_eq!(
        value(&scrape, "palisade_circuit_breaker_calls_total", &[("name", "late"), ("outcome", "failure")]),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        value(&scrape, "palisade_circuit_breaker_state", &[("name", "late"), ("state", "open")]),
        Some(1.0),
        "{scrape}"
    );
    assert_described(&scrape);
}
