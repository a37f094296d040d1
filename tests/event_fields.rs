#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(all(feature = "retry", feature = "circuit-breaker", feature = "rate-limit", feature = "bulkhead"))]
//! Issue 18.4: events reach `tracing` as real structured fields (`from`, `to`, `reason`,
//! `failure_rate`, `retry_after_ms`, `attempt`, …) that a JSON log can be queried by, checked
//! through `tracing-subscriber`'s JSON formatter.
//!
//! Each test installs its subscriber for its own thread only (`with_default`, never a global
//! one) and rebuilds the callsite interest cache inside it, so whether a callsite was first
//! seen by another test (with no subscriber) does not matter.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::bulkhead::BulkheadLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::rate_limit::{Quota, RateLimitLayer};
use palisade::retry::{Backoff, Jitter, RetryLayer};
use palisade::BoxError;
use serde_json::Value;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` on a paused current-thread runtime under a JSON subscriber scoped to this thread
/// and returns the `fields` object of every event palisade logged.
fn json_events<Fut: std::future::Future<Output = ()>>(
    f: impl FnOnce() -> Fut,
) -> Vec<serde_json::Map<String, Value>> {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        rt.block_on(f());
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    out.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|v| v["target"] == "palisade")
        .map(|v| v["fields"].as_object().unwrap().clone())
        .collect()
}

fn find<'a>(
    events: &'a [serde_json::Map<String, Value>],
    pattern: &str,
    kind: &str,
) -> &'a serde_json::Map<String, Value> {
    events
        .iter()
        .find(|e| e["pattern"] == pattern && e["event"] == kind)
        .unwrap_or_else(|| panic!("no {pattern} {kind} event in {events:#?}"))
}

fn failing(
) -> impl Service<u32, Response = u32, Error = BoxError, Future = std::future::Ready<Result<u32, BoxError>>> + Clone
{
    service_fn(|_: u32| std::future::ready(Err::<u32, BoxError>("down".into())))
}

#[test]
fn breaker_transitions_and_rejections_are_typed_fields() {
    let events = json_events(|| async {
        let breaker = CircuitBreakerLayer::builder()
            .name("payments")
            .failure_rate(0.5)
            .minimum_calls(4)
            .count_window(4)
            .wait_in_open(Duration::from_millis(1500))
            .build()
            .unwrap();
        let mut svc = ServiceBuilder::new().layer(breaker).service(failing());
        for _ in 0..4 {
            assert!(svc.ready().await.unwrap().call(1).await.is_err());
        }
        let refused = match svc.ready().await {
            Ok(svc) => svc.call(1).await.is_err(),
            Err(_) => true,
        };
        assert!(refused);
    });
    let opened = find(&events, "circuit_breaker", "state_transition");
    assert_eq!(opened["name"], "payments");
    assert_eq!(opened["from"], "closed");
    assert_eq!(opened["to"], "open");
    assert!(opened["reason"].is_string(), "{opened:?}");
    let exceeded = find(&events, "circuit_breaker", "failure_rate_exceeded");
    assert_eq!(exceeded["failure_rate"].as_f64(), Some(1.0), "{exceeded:?}");
    let rejected = find(&events, "circuit_breaker", "rejected");
    assert_eq!(rejected["retry_after_ms"].as_u64(), Some(1500), "{rejected:?}");
    // Nothing typed lands in the catch-all field.
    assert!(events.iter().all(|e| !e.contains_key("extra")), "{events:#?}");
}

#[test]
fn retry_attempts_and_give_ups_are_typed_fields() {
    let events = json_events(|| async {
        let retry = RetryLayer::builder()
            .name("fetch")
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(25)))
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let svc = ServiceBuilder::new().layer(retry).service(failing());
        assert!(svc.oneshot(1).await.is_err());
    });
    let scheduled = find(&events, "retry", "retry_scheduled");
    assert_eq!(scheduled["name"], "fetch");
    assert_eq!(scheduled["attempt"].as_u64(), Some(1), "{scheduled:?}");
    assert_eq!(scheduled["delay_ms"].as_u64(), Some(25), "{scheduled:?}");
    assert_eq!(scheduled["reason"], "failure");
    let gave_up = find(&events, "retry", "gave_up");
    assert_eq!(gave_up["attempt"].as_u64(), Some(3), "{gave_up:?}");
    assert_eq!(gave_up["reason"], "attempts_exhausted");
}

#[test]
fn rate_limit_and_bulkhead_rejections_are_typed_fields() {
    let events = json_events(|| async {
        let limit = RateLimitLayer::<u32>::builder().name("api").quota(Quota::per_second(1)).build().unwrap();
        let ok = service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
        let mut svc = ServiceBuilder::new().layer(limit).service(ok);
        assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
        let refused = match svc.ready().await {
            Ok(svc) => svc.call(2).await.is_err(),
            Err(_) => true,
        };
        assert!(refused);

        let bulkhead = BulkheadLayer::builder().name("db").max_concurrent(1).build().unwrap();
        let mut first = ServiceBuilder::new().layer(bulkhead.clone()).service(ok);
        let mut second = ServiceBuilder::new().layer(bulkhead).service(ok);
        first.ready().await.unwrap();
        let refused = match second.ready().await {
            Ok(svc) => svc.call(2).await.is_err(),
            Err(_) => true,
        };
        assert!(refused);
    });
    let limited = find(&events, "rate_limit", "rejected");
    assert_eq!(limited["name"], "api");
    assert!(limited["tier"].is_string(), "{limited:?}");
    assert_eq!(limited["retry_after_ms"].as_u64(), Some(1000), "{limited:?}");
    let full = find(&events, "bulkhead", "rejected");
    assert_eq!(full["name"], "db");
    assert_eq!(full["reason"], "no_permit", "{full:?}");
}
