#![allow(clippy::unwrap_used, missing_docs)]
//! The chaos layer's events as typed `tracing` fields, read through `Event::fields`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_chaos::{ChaosEvent, ChaosLayer};
use palisade_core::event::{Event, FieldValue};
use palisade_core::BoxError;
use tower::{service_fn, Layer, ServiceExt};

fn fields(e: &ChaosEvent) -> Vec<(&'static str, FieldValue)> {
    let mut out = Vec::new();
    e.fields(&mut |k, v| out.push((k, v)));
    out
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn injected_latency_reports_delay_ms() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let layer = ChaosLayer::builder()
        .seed(7)
        .latency_rate(1.0)
        .latency(Duration::from_millis(250))
        .on_event(move |e: &ChaosEvent| sink.lock().unwrap().push(*e))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
    let events = seen.lock().unwrap().clone();
    assert_eq!(events, vec![ChaosEvent::LatencyInjected { delay: Duration::from_millis(250) }]);
    assert_eq!(events[0].kind(), "latency_injected");
    assert_eq!(fields(&events[0]), vec![("delay_ms", FieldValue::U64(250))]);
}
