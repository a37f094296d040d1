//! The tower contract through a chaos layer, over an inner service with one permit
//! (`ConcurrencyLimit(1)`): whatever is injected, the permit `poll_ready` reserved is spent
//! by the call, kept for the next call, or released when the future or service is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::time::Duration;

use palisade_chaos::{ChaosBuilder, ChaosLayer};
use palisade_core::BoxError;
use tokio_test::{assert_pending, task};
use tower::limit::ConcurrencyLimit;
use tower::{service_fn, Layer, Service, ServiceExt};

fn limited(
    builder: ChaosBuilder<u32, u32>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    let inner = ConcurrencyLimit::new(service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 1) }), 1);
    builder.seed(1).build().unwrap().layer(inner)
}

/// `other` can reserve the only permit now (and gives it back).
fn permit_free<S: Service<u32>>(other: &mut S) -> bool {
    let mut ready = task::spawn(std::future::poll_fn(|cx| other.poll_ready(cx)));
    ready.poll().is_ready()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_delayed_call_holds_the_permit_until_dropped_even_at_duration_max() {
    for latency in [Duration::from_secs(3600), Duration::MAX] {
        let mut svc = limited(ChaosLayer::builder().latency_rate(1.0).latency(latency));
        let mut other = svc.clone();
        svc.ready().await.unwrap();
        assert!(!permit_free(&mut other), "reserved by poll_ready");
        let mut fut = task::spawn(svc.call(1));
        assert_pending!(fut.poll());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_pending!(fut.poll());
        assert!(!permit_free(&mut other), "held by the delayed call");
        drop(fut);
        assert!(permit_free(&mut other), "released with the future (latency {latency:?})");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_injected_answer_keeps_the_permit_for_the_next_call_and_a_dropped_service_releases_it() {
    for delayed in [false, true] {
        let mut b = ChaosLayer::builder().fault_rate(1.0);
        if delayed {
            b = b.latency_rate(1.0).latency(Duration::from_secs(1));
        }
        let mut svc = limited(b);
        let mut other = svc.clone();
        svc.ready().await.unwrap();
        let err = svc.call(1).await.unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        // The inner service was not called: its reservation stays with `svc`...
        assert!(!permit_free(&mut other));
        // ...until `svc` is dropped.
        drop(svc);
        assert!(permit_free(&mut other), "delayed: {delayed}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hang_releases_the_permit_when_dropped_and_answers_never() {
    let mut svc = limited(ChaosLayer::builder().hang_rate(1.0));
    let mut other = svc.clone();
    svc.ready().await.unwrap();
    let mut fut = task::spawn(svc.call(1));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_pending!(fut.poll());
    drop(fut);
    assert!(permit_free(&mut other));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_injected_answer_polled_after_completion_is_an_error_not_a_panic() {
    let mut svc = limited(ChaosLayer::builder().fault_rate(1.0));
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(1));
    assert!(fut.as_mut().await.is_err());
    let again = std::future::poll_fn(|cx| fut.as_mut().poll(cx)).await;
    assert!(again.unwrap_err().to_string().contains("after completion"));
}

/// The issue's huge serde duration, as the injected latency: it builds, the call waits
/// (effectively forever) without panicking, and dropping it releases the permit.
#[cfg(feature = "serde")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_serde_latency_saturates() {
    for text in ["200000000000000d", "18446744073709551615s"] {
        let json = format!(r#"{{"latency": "{text}", "latency_rate": 1.0, "seed": 1}}"#);
        let config: palisade_chaos::ChaosConfig = serde_json::from_str(&json).unwrap();
        let layer = config.build::<u32, u32>().unwrap();
        let inner = ConcurrencyLimit::new(service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 1) }), 1);
        let mut svc = layer.layer(inner);
        let mut other = svc.clone();
        svc.ready().await.unwrap();
        let mut fut = task::spawn(svc.call(1));
        assert_pending!(fut.poll());
        tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
        assert_pending!(fut.poll());
        drop(fut);
        assert!(permit_free(&mut other), "{text}");
    }
}
