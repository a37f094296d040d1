#![allow(clippy::unwrap_used, missing_docs)]
//! The pool's events as typed `tracing` fields, read through `Event::fields`.

mod support;

use std::time::Duration;

use palisade_core::event::{Event, FieldValue};
use palisade_pool::{Pool, PoolEvent};
use support::{settle, Behaviour, Events, Factory, Job};
use tokio::time::advance;
use tower::ServiceExt;

fn fields(e: &PoolEvent) -> Vec<(&'static str, FieldValue)> {
    let mut out = Vec::new();
    e.fields(&mut |k, v| out.push((k, v)));
    out
}

/// The fields of the first event of `kind`.
fn first(events: &Events, kind: &str) -> Vec<(&'static str, FieldValue)> {
    let all = events.all();
    let e = all.iter().find(|e| e.kind() == kind).unwrap_or_else(|| panic!("no {kind} in {all:?}"));
    fields(e)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_pool_event_reports_its_typed_fields() {
    // The first make fails; member 0 fails every call and is evicted after two.
    let f = Factory::new().fail_first(1).behave(0, Behaviour { fail_calls: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(Duration::from_millis(100), Duration::from_secs(10))
        .evict_after_failures(2)
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    assert_eq!(
        first(&events, "make_failed"),
        vec![
            ("attempt", FieldValue::U64(1)),
            ("delay_ms", FieldValue::U64(100)),
            ("error", "cannot make a member".into())
        ]
    );
    advance(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(
        first(&events, "scaled_up"),
        vec![("member", FieldValue::U64(0)), ("count", FieldValue::U64(1)), ("reason", "minimum".into())]
    );

    for n in 0..2 {
        let call = tokio::spawn(pool.clone().oneshot(Job::new(n).work(250)));
        settle().await;
        advance(Duration::from_millis(250)).await;
        assert!(call.await.unwrap().is_err());
    }
    settle().await;
    assert_eq!(
        first(&events, "completed"),
        vec![
            ("member", FieldValue::U64(0)),
            ("elapsed_ms", FieldValue::U64(250)),
            ("outcome", "failure".into())
        ]
    );
    assert_eq!(
        first(&events, "evicted"),
        vec![
            ("member", FieldValue::U64(0)),
            ("count", FieldValue::U64(0)),
            ("reason", "consecutive_failures".into()),
            ("failures", FieldValue::U64(2)),
        ]
    );
    advance(Duration::from_secs(1)).await;
    settle().await;
    let replaced =
        events.all().into_iter().filter(|e| e.kind() == "scaled_up").nth(1).map(|e| fields(&e)).unwrap();
    assert_eq!(
        replaced,
        vec![("member", FieldValue::U64(1)), ("count", FieldValue::U64(1)), ("reason", "replacement".into())]
    );

    assert!(pool.handle().shutdown(Duration::from_secs(1)).await.drained);
    assert_eq!(first(&events, "shutdown_started"), vec![]);
    assert_eq!(first(&events, "shutdown_finished"), vec![("outcome", "drained".into())]);
}
