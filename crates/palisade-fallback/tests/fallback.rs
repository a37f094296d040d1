#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::{classify_fn, Classification};
use palisade_core::rejection::{CircuitOpen, RateLimited, RejectionKind};
use palisade_core::BoxError;
use palisade_fallback::{
    FallbackCause, FallbackContext, FallbackEvent, FallbackLayer, FallbackReason, FallbackSnapshot, TriggerOn,
};
use support::{Calls, PendingForever, Recorder};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_test::mock;

fn boom() -> BoxError {
    "boom".into()
}

fn open() -> BoxError {
    CircuitOpen::new("backend", Duration::from_secs(3)).into()
}

/// A fallback answering 99 and counting its calls.
fn answer_99(
    calls: &Calls,
) -> impl Fn(FallbackContext<u32, u32>) -> std::future::Ready<Result<u32, BoxError>> {
    let calls = calls.clone();
    move |_ctx| {
        calls.hit();
        std::future::ready(Ok(99))
    }
}

fn snapshot(calls: u64, triggered: u64, used: u64, failed: u64, provider_failures: u64) -> FallbackSnapshot {
    let mut s = FallbackSnapshot::default();
    s.calls = calls;
    s.triggered = triggered;
    s.fallbacks_used = used;
    s.fallbacks_failed = failed;
    s.provider_failures = provider_failures;
    s
}

// === closures ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn success_passes_through_without_fallback() {
    let calls = Calls::default();
    let layer = FallbackLayer::builder().fallback_fn(answer_99(&calls)).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
    assert_eq!(svc.oneshot(1).await.unwrap(), 2);
    assert_eq!(calls.get(), 0);
    assert_eq!(handle.snapshot(), snapshot(1, 0, 0, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn error_is_answered_by_the_closure_with_the_error_in_context() {
    let recorder = Recorder::default();
    let layer = FallbackLayer::builder()
        .name("prices")
        .on_event(recorder.listener())
        .fallback_fn(|ctx: FallbackContext<u32, u32>| async move {
            assert_eq!(ctx.error().unwrap().to_string(), "boom");
            assert!(ctx.rejection().is_none());
            assert!(ctx.request().is_none());
            assert!(ctx.response().is_none());
            Ok::<_, BoxError>(7)
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) }));
    assert_eq!(svc.oneshot(1).await.unwrap(), 7);
    assert_eq!(handle.snapshot(), snapshot(1, 1, 1, 0, 0));
    let events = recorder.take();
    assert_eq!(events.len(), 1);
    match &events[0] {
        FallbackEvent::Used { provider, index, reason } => {
            assert_eq!(&**provider, "fn");
            assert_eq!(*index, 0);
            assert_eq!(*reason, FallbackReason::Error);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_request_the_context_holds_a_clone_of_the_request() {
    let layer = FallbackLayer::builder()
        .fallback_fn_with_request(|mut ctx: FallbackContext<String, String>| async move {
            let req = ctx.take_request().unwrap();
            Ok::<_, BoxError>(format!("cached {req}"))
        })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: String| async { Err::<String, _>(boom()) }));
    assert_eq!(svc.oneshot("a".to_owned()).await.unwrap(), "cached a");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rejection_is_answered_and_named_in_the_reason() {
    let recorder = Recorder::default();
    let layer = FallbackLayer::builder()
        .on_event(recorder.listener())
        .fallback_fn(|ctx: FallbackContext<u32, u32>| async move {
            let kind = ctx.rejection().map(palisade_core::Rejection::kind);
            assert_eq!(kind, Some(RejectionKind::CircuitOpen));
            Ok::<_, BoxError>(0)
        })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(open()) }));
    assert_eq!(svc.oneshot(1).await.unwrap(), 0);
    assert!(matches!(
        recorder.take()[..],
        [FallbackEvent::Used { reason: FallbackReason::Rejection(RejectionKind::CircuitOpen), .. }]
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn trigger_on_failures_lets_rejections_through() {
    let calls = Calls::default();
    let layer = FallbackLayer::builder()
        .trigger_on(TriggerOn::Failures)
        .fallback_fn(answer_99(&calls))
        .build()
        .unwrap();
    let err = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(open()) })).oneshot(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(calls.get(), 0);
    let ok = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) })).oneshot(1).await.unwrap();
    assert_eq!(ok, 99);
    assert_eq!(calls.get(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn trigger_on_rejections_lets_failures_through() {
    let calls = Calls::default();
    let layer = FallbackLayer::builder()
        .trigger_on(TriggerOn::Rejections)
        .fallback_fn(answer_99(&calls))
        .build()
        .unwrap();
    let err = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) })).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(calls.get(), 0);
    let ok = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(open()) })).oneshot(1).await.unwrap();
    assert_eq!(ok, 99);
    assert_eq!(layer.handle().snapshot(), snapshot(2, 1, 1, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn classifier_turns_responses_into_failures_and_ignores_errors() {
    // 500 and above are failures; an error "ignore me" is not.
    let classifier = classify_fn(|r: &Result<u32, BoxError>| match r {
        Ok(s) if *s >= 500 => Classification::failure(),
        Ok(_) => Classification::success(),
        Err(e) if e.to_string() == "ignore me" => Classification::ignored(),
        Err(_) => Classification::failure(),
    });
    let recorder = Recorder::default();
    let layer = FallbackLayer::builder()
        .classifier(classifier)
        .on_event(recorder.listener())
        .fallback_fn(|ctx: FallbackContext<u32, u32>| async move {
            match ctx.into_parts() {
                (FallbackCause::Response(status), None) => Ok::<_, BoxError>(status - 300),
                other => panic!("unexpected {other:?}"),
            }
        })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|status: u32| async move {
        if status == 0 {
            Err("ignore me".into())
        } else {
            Ok::<_, BoxError>(status)
        }
    }));
    assert_eq!(svc.clone().oneshot(503).await.unwrap(), 203);
    assert_eq!(svc.clone().oneshot(200).await.unwrap(), 200);
    assert_eq!(svc.oneshot(0).await.unwrap_err().to_string(), "ignore me");
    assert!(matches!(
        recorder.take()[..],
        [FallbackEvent::Used { reason: FallbackReason::FailedResponse, .. }]
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_closure_is_returned_as_the_error() {
    let recorder = Recorder::default();
    let layer = FallbackLayer::builder()
        .on_event(recorder.listener())
        .fallback_fn(|_: FallbackContext<u32, u32>| async { Err::<u32, _>("cache miss") })
        .build()
        .unwrap();
    let handle = layer.handle();
    let err = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) })).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "cache miss");
    assert_eq!(handle.snapshot(), snapshot(1, 1, 0, 1, 1));
    let events = recorder.take();
    assert!(
        matches!(&events[..], [FallbackEvent::ProviderFailed { index: 0, error, .. }, FallbackEvent::Exhausted { providers: 1, reason: FallbackReason::Error }] if &**error == "cache miss"),
        "{events:?}"
    );
}

// === services and chains ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fallback_service_gets_the_request_after_it_is_ready() {
    let (fallback, mut fb_handle) = mock::pair::<u32, u32>();
    fb_handle.allow(0);
    let layer = FallbackLayer::builder().fallback_service(fallback).build().unwrap();
    let mut svc = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) }));
    assert_ready_ok!(task::spawn(svc.ready()).poll());
    let mut fut = task::spawn(svc.call(5));
    assert_pending!(fut.poll());
    assert!(fb_handle.poll_request().is_pending(), "called before it was ready");
    fb_handle.allow(1);
    assert!(fut.is_woken());
    assert_pending!(fut.poll());
    let (req, send) = fb_handle.next_request().await.unwrap();
    assert_eq!(req, 5);
    send.send_response(50);
    assert_eq!(assert_ready_ok!(fut.poll()), 50);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn chain_tries_providers_in_order_until_one_answers() {
    let recorder = Recorder::default();
    let replica = service_fn(|_: u32| async { Err::<u32, BoxError>("replica down".into()) });
    let replica = tower::util::BoxCloneSyncService::new(replica);
    let cache =
        tower::util::BoxCloneSyncService::new(service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 100) }));
    let layer = FallbackLayer::builder()
        .on_event(recorder.listener())
        .fallback_chain([("replica", replica), ("cache", cache)])
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(open()) }));
    assert_eq!(svc.oneshot(3).await.unwrap(), 300);
    assert_eq!(handle.snapshot(), snapshot(1, 1, 1, 0, 1));
    let events = recorder.take();
    assert!(
        matches!(&events[..], [
            FallbackEvent::ProviderFailed { provider: p0, index: 0, error },
            FallbackEvent::Used { provider: p1, index: 1, reason: FallbackReason::Rejection(RejectionKind::CircuitOpen) },
        ] if &**p0 == "replica" && &**p1 == "cache" && &**error == "replica down"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn chain_returns_the_last_error_when_every_provider_fails() {
    let recorder = Recorder::default();
    let failing = |msg: &'static str| {
        tower::util::BoxCloneSyncService::new(service_fn(move |_: u32| async move {
            Err::<u32, BoxError>(msg.into())
        }))
    };
    let layer = FallbackLayer::builder()
        .on_event(recorder.listener())
        .fallback_chain([("a", failing("a failed")), ("b", failing("b failed")), ("c", failing("c failed"))])
        .build()
        .unwrap();
    let handle = layer.handle();
    let err = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) })).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "c failed");
    assert_eq!(handle.snapshot(), snapshot(1, 1, 0, 1, 3));
    let kinds: Vec<(&'static str, Option<usize>)> = recorder
        .take()
        .iter()
        .map(|e| match e {
            FallbackEvent::ProviderFailed { index, .. } => ("failed", Some(*index)),
            FallbackEvent::Exhausted { providers, .. } => ("exhausted", Some(*providers)),
            _ => ("other", None),
        })
        .collect();
    assert_eq!(
        kinds,
        [("failed", Some(0)), ("failed", Some(1)), ("failed", Some(2)), ("exhausted", Some(3))]
    );
}

#[test]
fn empty_chain_and_empty_name_are_config_errors() {
    let chain: Vec<(&str, tower::util::BoxCloneSyncService<u32, u32, BoxError>)> = Vec::new();
    let err = FallbackLayer::builder().fallback_chain(chain).build().unwrap_err();
    assert_eq!(err.field(), "fallback_chain");
    let err = FallbackLayer::builder()
        .name("")
        .fallback_fn(|_: FallbackContext<u32, u32>| async { Ok::<_, BoxError>(0) })
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "name");
}

// === admission refusals from poll_ready ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refusal_from_poll_ready_is_answered_on_the_next_call_without_calling_inner() {
    let calls = Calls::default();
    let layer = FallbackLayer::builder().fallback_fn(answer_99(&calls)).build().unwrap();
    let (inner, mut handle) = mock::pair::<u32, u32>();
    let mut svc = layer.layer(inner);
    handle.send_error(RateLimited::new("api", Duration::from_secs(1)));
    assert_ready_ok!(task::spawn(svc.ready()).poll());
    // A clone starts un-ready: the kept refusal belongs to `svc`.
    let mut clone = svc.clone();
    assert_ready_ok!(task::spawn(clone.ready()).poll());
    assert_eq!(svc.call(1).await.unwrap(), 99);
    assert!(handle.poll_request().is_pending(), "inner must not be called");
    assert_eq!(calls.get(), 1);
    // The clone polled the inner service itself and calls it.
    let fut = clone.call(2);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 2);
    send.send_response(20);
    assert_eq!(fut.await.unwrap(), 20);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refusal_from_poll_ready_not_triggering_is_returned() {
    let calls = Calls::default();
    let layer = FallbackLayer::builder()
        .trigger_on(TriggerOn::Failures)
        .fallback_fn(answer_99(&calls))
        .build()
        .unwrap();
    let (inner, mut handle) = mock::pair::<u32, u32>();
    let mut svc = layer.layer(inner);
    handle.send_error(RateLimited::new("api", Duration::from_secs(1)));
    let err = assert_ready_err!(task::spawn(svc.ready()).poll());
    assert!(err.is::<RateLimited>());
    assert_eq!(calls.get(), 0);
}

// === cancellation ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_cancels_the_inner_call() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let calls = Calls::default();
    let layer = FallbackLayer::builder().fallback_fn(answer_99(&calls)).build().unwrap();
    let mut svc = layer.layer(service_fn(move |_: u32| PendingForever::<Result<u32, BoxError>>::new(&flag)));
    let mut fut = task::spawn(svc.ready().await.unwrap().call(1));
    assert_pending!(fut.poll());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(fut);
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(calls.get(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_cancels_the_fallback() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let layer = FallbackLayer::builder()
        .fallback_fn(move |_: FallbackContext<u32, u32>| PendingForever::<Result<u32, BoxError>>::new(&flag))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) }));
    let mut fut = task::spawn(svc.ready().await.unwrap().call(1));
    assert_pending!(fut.poll());
    assert_eq!(handle.snapshot().triggered, 1);
    drop(fut);
    assert!(dropped.load(Ordering::SeqCst));
    drop(svc); // a service adds its call count to the shared counter when dropped (every 64 calls before)
    assert_eq!(handle.snapshot(), snapshot(1, 1, 0, 0, 0));
}

#[test]
fn handle_and_layer_debug_name_the_layer() {
    let layer = FallbackLayer::builder()
        .name("prices")
        .fallback_fn(|_: FallbackContext<u32, u32>| async { Ok::<_, BoxError>(0) })
        .build()
        .unwrap();
    assert!(format!("{layer:?}").contains("prices"));
    assert_eq!(layer.handle().name(), "prices");
    let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    assert_eq!(svc.handle().name(), "prices");
}

#[test]
fn services_and_futures_are_send_and_sync_for_axum() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let layer = FallbackLayer::builder()
        .fallback_fn(|_: FallbackContext<u32, u32>| async { Ok::<_, BoxError>(0) })
        .build()
        .unwrap();
    assert_send_sync(&layer);
    let mut svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    assert_send_sync(&svc);
    assert_send(&svc.call(1));
    let layer = FallbackLayer::builder()
        .fallback_service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }))
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    assert_send(&svc.call(1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refusal_from_poll_ready_walks_the_whole_chain() {
    let failing = tower::util::BoxCloneSyncService::new(service_fn(|_: u32| async {
        Err::<u32, BoxError>("replica down".into())
    }));
    let cache =
        tower::util::BoxCloneSyncService::new(service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) }));
    let layer =
        FallbackLayer::builder().fallback_chain([("replica", failing), ("cache", cache)]).build().unwrap();
    let (inner, mut handle) = mock::pair::<u32, u32>();
    let mut svc = layer.layer(inner);
    handle.send_error(RateLimited::new("api", Duration::from_secs(1)));
    assert_ready_ok!(task::spawn(svc.ready()).poll());
    assert_eq!(svc.call(21).await.unwrap(), 42);
    drop(svc); // a service adds its call count to the shared counter when dropped
    assert_eq!(layer.handle().snapshot(), snapshot(1, 1, 1, 0, 1));
}

// === review: panics in user code ===

/// Review: a fallback closure that panics runs on the caller's task (as any tower service's
/// code), so the panic is the caller's: it fails that task only. The layer's shared state
/// is not poisoned: later calls through the same service (and its clones) are answered,
/// and a panicking later provider of a chain fails only that call.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_fallback_fails_only_its_own_call() {
    let layer = FallbackLayer::builder()
        .fallback_fn(|ctx: FallbackContext<u32, u32>| async move {
            assert!(ctx.error().is_none_or(|e| e.to_string() != "panic please"), "fallback panicked");
            Ok::<_, BoxError>(99)
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|x: u32| async move {
        if x == 0 {
            Err::<u32, BoxError>("panic please".into())
        } else {
            Err(boom())
        }
    }));
    let panicked = tokio::spawn(svc.clone().oneshot(0)).await.unwrap_err();
    assert!(panicked.is_panic());
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 99, "the layer goes on");
    let s = handle.snapshot();
    assert_eq!((s.calls, s.triggered, s.fallbacks_used), (2, 2, 1));
    // A panic while *making* the fallback future (in the closure itself, not its future).
    let layer = FallbackLayer::builder()
        .fallback_fn(|_: FallbackContext<u32, u32>| -> std::future::Ready<Result<u32, BoxError>> {
            panic!("closure panicked")
        })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(boom()) }));
    assert!(tokio::spawn(svc.clone().oneshot(1)).await.unwrap_err().is_panic());
    assert!(tokio::spawn(svc.clone().oneshot(2)).await.unwrap_err().is_panic());
}

/// The pass path touches no shared counter: a service value counts its calls and adds them
/// to the shared `calls` counter every 64 calls and when it is dropped; clones count apart.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn calls_are_counted_per_service_in_batches_of_64_and_on_drop() {
    let layer = FallbackLayer::new(|_: FallbackContext<u32, u32>| async { Ok::<_, BoxError>(0) });
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    for i in 0..63 {
        assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
    }
    assert_eq!(handle.snapshot().calls, 0);
    svc.ready().await.unwrap().call(63).await.unwrap();
    assert_eq!(handle.snapshot().calls, 64);
    let mut clone = svc.clone();
    clone.ready().await.unwrap().call(1).await.unwrap();
    svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(handle.snapshot().calls, 64);
    drop(clone);
    assert_eq!(handle.snapshot().calls, 65);
    drop(svc);
    assert_eq!(handle.snapshot().calls, 66);
    assert_eq!(handle.snapshot().triggered, 0);
}
