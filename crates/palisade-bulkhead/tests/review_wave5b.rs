//! Review wave 5b: every refusal is counted in the snapshot and published as an event,
//! including the two that were not — a call shed because the inner service was not ready
//! (`shed_when_inner_not_ready`) and a new key refused by a full keyed bulkhead
//! (`KeySetFull`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_bulkhead::{BulkheadEvent, BulkheadFullReason, BulkheadLayer};
use palisade_core::event::{Event, FieldValue};
use palisade_core::rejection::KeySetFull;
use palisade_core::WhenFull;
use tokio_test::assert_ready_ok;
use tower::ServiceExt;
use tower_test::mock;

type Events = Arc<Mutex<Vec<BulkheadEvent>>>;

/// The field `name` an event logs, if it logs it.
fn field(event: &BulkheadEvent, name: &str) -> Option<FieldValue> {
    let mut found = None;
    event.fields(&mut |n, value| {
        if n == name {
            found = Some(value);
        }
    });
    found
}

/// A call shed because the inner service was not ready is a refusal like the others: in
/// `snapshot().rejected()` (and its own `rejected_inner_not_ready`), and published as
/// `BulkheadEvent::InnerNotReady` (kind `rejected`, reason `inner_not_ready`, as the
/// `palisade_bulkhead_rejected_total{reason="inner_not_ready"}` counter).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_shed_because_the_inner_service_was_not_ready_is_counted_and_published() {
    let events = Events::default();
    let seen = events.clone();
    let layer = BulkheadLayer::builder()
        .max_concurrent(2)
        .shed_when_inner_not_ready()
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let h = layer.handle();
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(layer);

    // Inner not ready, twice: two refusals.
    handle.allow(0);
    for shed in 1..=2 {
        assert_ready_ok!(svc.poll_ready());
        let err = svc.call(()).await.unwrap_err();
        assert!(support::is_overloaded(&err), "{err}");
        let snapshot = h.snapshot();
        assert_eq!(snapshot.rejected_inner_not_ready, shed);
        assert_eq!(snapshot.rejected(), shed, "{snapshot:?}");
        assert_eq!(h.shed_inner_not_ready(), shed);
        assert_eq!(snapshot.in_flight, 0, "the permit went back");
    }
    {
        let events = events.lock().unwrap();
        // The permit is taken before the inner service is polled (as tower's
        // `ConcurrencyLimit`), so each shed call was `Acquired` first, then refused.
        let acquired = BulkheadEvent::Acquired { wait: Duration::ZERO };
        let shed = BulkheadEvent::InnerNotReady;
        assert_eq!(*events, vec![acquired.clone(), shed.clone(), acquired, shed]);
        assert_eq!(events[1].kind(), "rejected");
        assert_eq!(field(&events[1], "reason"), Some(FieldValue::from("inner_not_ready")));
    }

    // Ready again: the call passes, nothing more is counted, only `Acquired` is published.
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(());
    let ((), send) = handle.next_request().await.unwrap();
    send.send_response(());
    fut.await.unwrap();
    assert_eq!(h.snapshot().rejected(), 2);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 5);
    assert!(matches!(events[4], BulkheadEvent::Acquired { .. }), "{events:?}");
}

/// The other refusals keep their own counters and reasons beside the new one: one of each
/// reason, and `rejected()` is their sum.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rejected_sums_every_reason() {
    let events = Events::default();
    let seen = events.clone();
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::Refuse)
        .shed_when_inner_not_ready()
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let h = layer.handle();
    let (mut a, mut handle) = mock::spawn_layer::<(), (), _>(layer);
    let mut b = a.clone();

    handle.allow(1);
    assert_ready_ok!(a.poll_ready()); // holds the only permit
    assert_ready_ok!(b.poll_ready()); // no permit: refused
    let err = b.call(()).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    drop(a); // the permit goes back
    handle.allow(0);
    assert_ready_ok!(b.poll_ready()); // a permit, but the inner service is not ready
    assert!(support::is_overloaded(&b.call(()).await.unwrap_err()));

    let snapshot = h.snapshot();
    assert_eq!((snapshot.rejected_no_permit, snapshot.rejected_inner_not_ready), (1, 1));
    assert_eq!(snapshot.rejected(), 2);
    let rejections: Vec<_> =
        events.lock().unwrap().iter().filter(|e| e.kind() == "rejected").cloned().collect();
    assert_eq!(
        rejections,
        vec![BulkheadEvent::Rejected { reason: BulkheadFullReason::NoPermit }, BulkheadEvent::InnerNotReady,]
    );
}

/// A new key refused by a full keyed bulkhead is counted under its own reason
/// (`rejected_key_set_full`, `palisade_bulkhead_rejected_total{reason="key_set_full"}`), not
/// as a missing permit, and published as `BulkheadEvent::KeySetFull` with the key capacity.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_new_key_refused_by_a_full_key_set_is_counted_and_published() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::Refuse)
        .keyed(|r: &(&'static str, u32)| Some(r.0))
        .max_keys(1)
        .build()
        .unwrap();
    let h = layer.handle();
    let events = Events::default();
    let seen = events.clone();
    h.on_event(move |e| seen.lock().unwrap().push(e.clone()));
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);

    let a = tokio::spawn(svc.clone().oneshot(("A", 1)));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"A"), 1);

    // B and C find the only key place held by a busy A.
    for (n, key) in [(1, "B"), (2, "C")] {
        let err = svc.clone().oneshot((key, 2)).await.unwrap_err();
        assert_eq!(err.downcast_ref::<KeySetFull>().map(KeySetFull::capacity), Some(1));
        let total = h.snapshot().total;
        assert_eq!(total.rejected_key_set_full, n);
        assert_eq!(total.rejected_no_permit, 0, "a full key set is not a missing permit");
        assert_eq!(total.rejected(), n);
    }
    // A second A is refused for want of a permit: the other reason, counted apart.
    let err = svc.clone().oneshot(("A", 3)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    let total = h.snapshot().total;
    assert_eq!((total.rejected_key_set_full, total.rejected_no_permit, total.rejected()), (2, 1, 3));
    assert_eq!(h.overflows(), 2);

    {
        let events = events.lock().unwrap();
        let rejections: Vec<_> = events.iter().filter(|e| e.kind() == "rejected").cloned().collect();
        assert_eq!(
            rejections,
            vec![
                BulkheadEvent::KeySetFull { capacity: 1 },
                BulkheadEvent::KeySetFull { capacity: 1 },
                BulkheadEvent::Rejected { reason: BulkheadFullReason::NoPermit },
            ]
        );
        assert_eq!(field(&rejections[0], "reason"), Some(FieldValue::from("key_set_full")));
        assert_eq!(field(&rejections[0], "capacity"), Some(FieldValue::from(1usize)));
    }

    gate.notify_waiters();
    assert_eq!(a.await.unwrap().unwrap(), 1);
}
