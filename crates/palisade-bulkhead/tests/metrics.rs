//! What the bulkhead exports through the `metrics` facade, read from a recorder local to the
//! test (`metrics::with_local_recorder`): no global recorder, so no other test can see or
//! change what this one records.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![allow(clippy::float_cmp)] // sums of small integers and exact binary fractions of a paused clock

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata};
use metrics::{Recorder, SharedString, Unit};
use palisade_bulkhead::{BulkheadFullReason, BulkheadLayer};
use palisade_core::WhenFull;
use tokio_test::{assert_pending, assert_ready_ok};
use tower_test::mock;

/// Every sample exported, by `metric{name=…}`.
#[derive(Clone, Default)]
struct LocalRecorder(Arc<Mutex<BTreeMap<String, Vec<f64>>>>);

struct Cell {
    key: String,
    all: LocalRecorder,
}

impl Cell {
    fn push(&self, v: f64) {
        self.all.0.lock().unwrap().entry(self.key.clone()).or_default().push(v);
    }
}

impl CounterFn for Cell {
    fn increment(&self, n: u64) {
        self.push(n as f64);
    }
    fn absolute(&self, n: u64) {
        self.push(n as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        self.push(v);
    }
    fn decrement(&self, v: f64) {
        self.push(-v);
    }
    fn set(&self, v: f64) {
        self.push(v);
    }
}

impl HistogramFn for Cell {
    fn record(&self, v: f64) {
        self.push(v);
    }
}

impl LocalRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        Arc::new(Cell { key: format!("{}{{{}}}", key.name(), labels.join(",")), all: self.clone() })
    }

    fn samples(&self, key: &str) -> Vec<f64> {
        self.0.lock().unwrap().get(key).cloned().unwrap_or_default()
    }
}

impl Recorder for LocalRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

/// Issue 18.4: requests that waited 50 ms and were refused left
/// `palisade_bulkhead_waited_total` at 0 and the wait histogram empty (only a wait that
/// ended with a permit was counted). Every wait is counted now: one that ends with a permit,
/// one refused when its `max_wait` runs out, and one dropped while waiting (an outer timeout).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_wait_is_counted_and_timed() {
    let recorder = LocalRecorder::default();
    let layer = metrics::with_local_recorder(&recorder, || {
        BulkheadLayer::builder()
            .name("db")
            .max_concurrent(1)
            .when_full(WhenFull::wait(Duration::from_millis(50)))
            .build()
            .unwrap()
    });
    let h = layer.handle();
    let (mut holder, mut inner) = mock::spawn_layer::<(), (), _>(layer);
    let mut timed_out = holder.clone();
    let mut dropped = holder.clone();
    let mut granted = holder.clone();

    assert_ready_ok!(holder.poll_ready());
    assert_pending!(timed_out.poll_ready());
    tokio::time::advance(Duration::from_millis(20)).await;
    assert_pending!(dropped.poll_ready());
    tokio::time::advance(Duration::from_millis(10)).await;
    // An outer timeout gives up on this caller after 10 ms in line.
    drop(dropped);
    tokio::time::advance(Duration::from_millis(20)).await;
    // 50 ms: the first waiter's wait runs out.
    assert_ready_ok!(timed_out.poll_ready());
    let err = timed_out.call(()).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::WaitTimedOut));

    assert_pending!(granted.poll_ready());
    tokio::time::advance(Duration::from_millis(5)).await;
    inner.allow(1);
    let call = holder.call(());
    let ((), send) = inner.next_request().await.unwrap();
    send.send_response(());
    call.await.unwrap();
    inner.allow(1);
    assert_ready_ok!(granted.poll_ready());

    let waited = recorder.samples("palisade_bulkhead_waited_total{name=db}");
    assert_eq!(waited.iter().sum::<f64>(), 3.0, "{waited:?}");
    let mut waits = recorder.samples("palisade_bulkhead_wait_seconds{name=db}");
    waits.sort_by(f64::total_cmp);
    assert_eq!(waits, vec![0.005, 0.01, 0.05]);
    let s = h.snapshot();
    assert_eq!(s.waited, 3);
    assert_eq!(s.max_wait, Duration::from_millis(50));
    assert_eq!(s.rejected_wait_timed_out, 1);
}

/// A new key refused by a full keyed bulkhead is exported under its own reason
/// (`key_set_full`), not as a missing permit; a call shed because the inner service was not
/// ready under `inner_not_ready`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn key_set_full_and_inner_not_ready_have_their_own_reasons() {
    let recorder = LocalRecorder::default();
    let keyed = metrics::with_local_recorder(&recorder, || {
        BulkheadLayer::builder()
            .name("tenants")
            .max_concurrent(1)
            .keyed(|r: &(&'static str, u32)| Some(r.0))
            .max_keys(1)
            .build()
            .unwrap()
    });
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(keyed).service(inner);
    let a = tokio::spawn(tower::ServiceExt::oneshot(svc.clone(), ("A", 1)));
    tokio::task::yield_now().await;
    let err = tower::ServiceExt::oneshot(svc.clone(), ("B", 2)).await.unwrap_err();
    assert!(err.is::<palisade_bulkhead::KeySetFull>(), "{err}");
    let key_set_full = "palisade_bulkhead_rejected_total{name=tenants,reason=key_set_full}";
    assert_eq!(recorder.samples(key_set_full).iter().sum::<f64>(), 1.0);
    let no_permit = "palisade_bulkhead_rejected_total{name=tenants,reason=no_permit}";
    assert_eq!(recorder.samples(no_permit).iter().sum::<f64>(), 0.0);
    gate.notify_waiters();
    assert_eq!(a.await.unwrap().unwrap(), 1);

    let shedding = metrics::with_local_recorder(&recorder, || {
        BulkheadLayer::builder().name("shed").shed_when_inner_not_ready().build().unwrap()
    });
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(shedding);
    handle.allow(0);
    assert_ready_ok!(svc.poll_ready());
    assert!(support::is_overloaded(&svc.call(()).await.unwrap_err()));
    let shed = "palisade_bulkhead_rejected_total{name=shed,reason=inner_not_ready}";
    assert_eq!(recorder.samples(shed).iter().sum::<f64>(), 1.0);
}
