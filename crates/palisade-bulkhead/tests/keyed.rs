#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use palisade_bulkhead::{BulkheadFullReason, BulkheadLayer};
use palisade_core::rejection::KeySetFull;
use palisade_core::WhenFull;
use tower::ServiceExt;

type Req = (&'static str, u32);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_tenant_cannot_take_every_permit() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(2)
        .when_full(WhenFull::Refuse)
        .keyed(|r: &Req| Some(r.0))
        .max_keys(100)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);

    let a1 = tokio::spawn(svc.clone().oneshot(("a", 1)));
    let a2 = tokio::spawn(svc.clone().oneshot(("a", 2)));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"a"), 2);

    // Tenant a is full and refused ...
    let err = svc.clone().oneshot(("a", 3)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    // ... while tenant b still gets its own permits.
    let b1 = tokio::spawn(svc.clone().oneshot(("b", 4)));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"b"), 1);
    assert_eq!(h.snapshot().total.in_flight, 3);

    gate.notify_waiters();
    assert_eq!(a1.await.unwrap().unwrap(), 1);
    assert_eq!(a2.await.unwrap().unwrap(), 2);
    assert_eq!(b1.await.unwrap().unwrap(), 4);
    assert_eq!(h.snapshot().total.in_flight, 0);
    assert_eq!(h.snapshot().total.rejected_no_permit, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn key_count_is_bounded() {
    let layer = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(1)
        .keyed(|r: &u32| Some(*r))
        .max_keys(8)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
    for k in 0..1000 {
        svc.clone().oneshot(k).await.unwrap();
        assert!(h.keys() <= 8);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_keyed_future_leaves_the_queue_and_frees_permits() {
    let layer = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(1)
        .keyed(|r: &Req| Some(r.0))
        .max_keys(10)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);
    let running = tokio::spawn(svc.clone().oneshot(("a", 1)));
    tokio::task::yield_now().await;
    let waiting = tokio::spawn(svc.clone().oneshot(("a", 2)));
    tokio::task::yield_now().await;
    assert_eq!(h.queued(&"a"), 1);
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(h.queued(&"a"), 0);
    running.abort();
    let _ = running.await;
    assert_eq!(h.in_flight(&"a"), 0);
    gate.notify_waiters();
    // The key is usable again.
    let next = tokio::spawn(svc.oneshot(("a", 3)));
    tokio::task::yield_now().await;
    gate.notify_waiters();
    assert_eq!(next.await.unwrap().unwrap(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unused_keys_are_forgotten_only_when_room_is_needed() {
    let layer = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(1)
        .keyed(|r: &u32| Some(*r))
        .max_keys(3)
        .build()
        .unwrap();
    let h = layer.handle();
    assert_eq!(h.max_keys(), 3);
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
    for k in 1..=3 {
        svc.clone().oneshot(k).await.unwrap();
    }
    assert_eq!((h.keys(), h.evictions()), (3, 0), "room left: nothing forgotten");
    svc.clone().oneshot(4).await.unwrap();
    // The map was full: every unused key went at once (any of them is as good as new).
    assert_eq!((h.keys(), h.evictions()), (1, 3));
    assert_eq!(h.sweep(), 1);
    assert_eq!(h.keys(), 0);
}

/// Issue 13.1: `max_concurrent(1)`, `max_keys(1)`; key A in flight, key B must not evict A,
/// so a second A cannot run beside the first.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_key_in_flight_is_never_evicted() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::Refuse)
        .keyed(|r: &Req| Some(r.0))
        .max_keys(1)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);

    let a1 = tokio::spawn(svc.clone().oneshot(("A", 1)));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"A"), 1);

    let err = svc.clone().oneshot(("B", 2)).await.unwrap_err();
    assert_eq!(err.downcast_ref::<KeySetFull>().map(KeySetFull::capacity), Some(1));
    let err = svc.clone().oneshot(("A", 3)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit), "one A at a time");
    assert_eq!(h.snapshot().total.in_flight, 1, "the running A call is still seen");
    assert_eq!((h.keys(), h.evictions(), h.overflows()), (1, 0, 1));

    gate.notify_waiters();
    assert_eq!(a1.await.unwrap().unwrap(), 1);
    // A is idle now: B takes its place.
    let b = tokio::spawn(svc.clone().oneshot(("B", 4)));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"B"), 1);
    assert_eq!(h.evictions(), 1);
    gate.notify_waiters();
    assert_eq!(b.await.unwrap().unwrap(), 4);
}

/// A key with callers waiting in its queue is not evicted either.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_key_with_waiters_is_never_evicted() {
    let layer = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(1)
        .keyed(|r: &Req| Some(r.0))
        .max_keys(1)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);
    let a1 = tokio::spawn(svc.clone().oneshot(("A", 1)));
    tokio::task::yield_now().await;
    let a2 = tokio::spawn(svc.clone().oneshot(("A", 2)));
    tokio::task::yield_now().await;
    assert_eq!(h.queued(&"A"), 1);
    assert!(svc.clone().oneshot(("B", 3)).await.unwrap_err().is::<KeySetFull>());
    assert_eq!(h.sweep(), 0);
    assert_eq!(h.snapshot().total.queued, 1);
    gate.notify_waiters();
    assert_eq!(a1.await.unwrap().unwrap(), 1);
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"A"), 1, "the waiter got A's permit, in the same compartment");
    gate.notify_waiters();
    assert_eq!(a2.await.unwrap().unwrap(), 2);
    assert_eq!(h.sweep(), 1);
}

/// Review: idle time forgets no key (the old `key_idle_timeout` is gone): however long an
/// hour passes, a key with a call in flight is never forgotten, and an idle key is
/// forgotten only for room.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_time_forgets_no_key() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::Refuse)
        .keyed(|r: &Req| Some(r.0))
        .max_keys(2)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);
    let a = tokio::spawn(svc.clone().oneshot(("A", 1)));
    tokio::task::yield_now().await;
    tokio::time::advance(std::time::Duration::from_secs(3600)).await;
    let b = tokio::spawn(svc.clone().oneshot(("B", 2)));
    tokio::task::yield_now().await;
    assert!(svc.clone().oneshot(("C", 3)).await.unwrap_err().is::<KeySetFull>());
    let err = svc.clone().oneshot(("A", 4)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit), "A still has its call");
    assert_eq!((h.keys(), h.evictions()), (2, 0));
    gate.notify_waiters();
    assert_eq!(a.await.unwrap().unwrap(), 1);
    assert_eq!(b.await.unwrap().unwrap(), 2);
    tokio::time::advance(std::time::Duration::from_secs(3600)).await;
    assert_eq!(h.keys(), 2, "idle keys stay until room is needed");
}

/// Review (issue 13.5 for the keyed bulkhead): the handle changes every key's permits,
/// held keys and keys made later alike, without losing a permit in flight; shrinking
/// below the calls in flight lets them finish and admits none until below. Also max wait.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_keyed_handle_changes_every_keys_limits_at_run_time() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(2)
        .when_full(WhenFull::Refuse)
        .keyed(|r: &Req| Some(r.0))
        .max_keys(10)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated();
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);
    let a: Vec<_> = (0..2).map(|i| tokio::spawn(svc.clone().oneshot(("A", i)))).collect();
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"A"), 2);

    // Shrink to 1: A's two calls go on, a third A is refused, a new key B gets 1.
    h.set_max_concurrent(1).unwrap();
    assert_eq!((h.max_concurrent(), h.snapshot().total.max_concurrent), (1, 1));
    let err = svc.clone().oneshot(("A", 9)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    let b = tokio::spawn(svc.clone().oneshot(("B", 5)));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot(("B", 6)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit), "new keys get the new limit");
    assert_eq!((h.in_flight(&"A"), h.in_flight(&"B")), (2, 1));

    gate.notify_waiters();
    for t in a {
        t.await.unwrap().unwrap();
    }
    b.await.unwrap().unwrap();
    assert_eq!((h.in_flight(&"A"), h.in_flight(&"B")), (0, 0), "the debt is paid, nothing leaked");

    // Grow to 3: three calls for A at once.
    h.set_max_concurrent(3).unwrap();
    let a: Vec<_> = (0..3).map(|i| tokio::spawn(svc.clone().oneshot(("A", i)))).collect();
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(&"A"), 3);
    assert!(svc.clone().oneshot(("A", 4)).await.is_err());
    // A bounded wait set at run time: the fourth waits and is refused after it.
    h.set_when_full(WhenFull::wait(std::time::Duration::from_secs(1)));
    assert_eq!(h.when_full(), WhenFull::wait(std::time::Duration::from_secs(1)));
    let start = tokio::time::Instant::now();
    let err = svc.clone().oneshot(("A", 4)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::WaitTimedOut));
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(1));
    gate.notify_waiters();
    for t in a {
        t.await.unwrap().unwrap();
    }
    assert!(h.set_max_concurrent(usize::MAX).is_err());
    assert_eq!(h.max_concurrent(), 3, "a refused change changes nothing");
}
