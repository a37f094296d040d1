#![allow(clippy::unwrap_used, missing_docs)]
//! The fallback layer's events as typed `tracing` fields, read through `Event::fields`.

mod support;

use palisade_core::event::{Event, FieldValue};
use palisade_core::BoxError;
use palisade_fallback::{FallbackContext, FallbackEvent, FallbackLayer};
use support::Recorder;
use tower::{service_fn, Layer, ServiceExt};

fn fields(e: &FallbackEvent) -> Vec<(&'static str, FieldValue)> {
    let mut out = Vec::new();
    e.fields(&mut |k, v| out.push((k, v)));
    out
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_used_fallback_reports_provider_index_and_reason() {
    let recorder = Recorder::default();
    let layer = FallbackLayer::builder()
        .on_event(recorder.listener())
        .fallback_fn(|_: FallbackContext<u32, u32>| async { Ok::<_, BoxError>(7) })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, BoxError>("boom".into()) }));
    assert_eq!(svc.oneshot(1).await.unwrap(), 7);
    let events = recorder.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind(), "fallback_used");
    assert_eq!(
        fields(&events[0]),
        vec![("provider", "fn".into()), ("index", FieldValue::U64(0)), ("reason", "error".into())]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_provider_reports_its_error_and_exhaustion_its_count() {
    let recorder = Recorder::default();
    let layer = FallbackLayer::builder()
        .on_event(recorder.listener())
        .fallback_fn(|_: FallbackContext<u32, u32>| async { Err::<u32, BoxError>("stale".into()) })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, BoxError>("boom".into()) }));
    assert!(svc.oneshot(1).await.is_err());
    let events = recorder.take();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].kind(), "provider_failed");
    assert_eq!(
        fields(&events[0]),
        vec![("provider", "fn".into()), ("index", FieldValue::U64(0)), ("error", "stale".into())]
    );
    assert_eq!(events[1].kind(), "fallback_exhausted");
    assert_eq!(fields(&events[1]), vec![("count", FieldValue::U64(1)), ("reason", "error".into())]);
}
