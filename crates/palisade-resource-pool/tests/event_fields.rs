#![allow(clippy::unwrap_used, missing_docs)]
//! The resource pool's events as typed `tracing` fields, read through `Event::fields`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::event::{Event, FieldValue};
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use palisade_resource_pool::{lifecycle_fn, Pooled, ResourcePool, ResourcePoolEvent};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, task};

fn fields(e: &ResourcePoolEvent) -> Vec<(&'static str, FieldValue)> {
    let mut out = Vec::new();
    e.fields(&mut |k, v| out.push((k, v)));
    out
}

fn take(events: &Mutex<Vec<ResourcePoolEvent>>) -> Vec<(&'static str, Vec<(&'static str, FieldValue)>)> {
    std::mem::take(&mut *events.lock().unwrap()).iter().map(|e| (e.kind(), fields(e))).collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn created_destroyed_failed_and_timed_out_report_their_fields() {
    // The first create fails, every later one succeeds.
    let creates = Arc::new(AtomicU32::new(0));
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pool = ResourcePool::builder(lifecycle_fn(move || {
        let n = creates.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err::<u32, BoxError>("connection refused".into())
            } else {
                Ok(n)
            }
        }
    }))
    .max_size(1)
    .when_full(WhenFull::wait(Duration::from_millis(1500)))
    .on_event(move |e: &ResourcePoolEvent| seen.lock().unwrap().push(e.clone()))
    .build()
    .unwrap();

    assert!(pool.acquire().await.is_err());
    assert_eq!(take(&events), vec![("create_failed", vec![("error", "connection refused".into())])]);

    let held = pool.acquire().await.unwrap();
    assert_eq!(take(&events), vec![("created", vec![("count", FieldValue::U64(1))])]);

    let mut waiting = task::spawn(pool.acquire());
    assert_pending!(waiting.poll());
    advance(Duration::from_millis(1500)).await;
    assert!(assert_ready!(waiting.poll()).is_err());
    assert_eq!(take(&events), vec![("acquire_timed_out", vec![("elapsed_ms", FieldValue::U64(1500))])]);

    Pooled::destroy(held).await;
    assert_eq!(
        take(&events),
        vec![("destroyed", vec![("reason", "discarded".into()), ("count", FieldValue::U64(0))])]
    );
}
