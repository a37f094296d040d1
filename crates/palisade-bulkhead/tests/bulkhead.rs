#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Services named a, b, c in the order they queue read best here.
#![allow(clippy::many_single_char_names)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_bulkhead::{BulkheadEvent, BulkheadFullReason, BulkheadLayer};
use palisade_core::WhenFull;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Service, ServiceExt};
use tower_test::mock;

fn layer(max: usize) -> BulkheadLayer {
    BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(max).build().unwrap()
}

// === the tower five ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reserve_without_calling_holds_the_permit() {
    let l = layer(1);
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_eq!(h.in_flight(), 1);
    assert_pending!(b.poll_ready());
    assert_eq!(h.queued(), 1);
    // Polling again does not take a second permit.
    assert_ready_ok!(a.poll_ready());
    assert_eq!(h.in_flight(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_ready_service_frees_its_permit() {
    let l = layer(1);
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    drop(a);
    assert!(b.is_woken());
    assert_ready_ok!(b.poll_ready());
    assert_eq!(h.in_flight(), 1);
    assert_eq!(h.queued(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_response_future_frees_its_permit() {
    let l = layer(1);
    let h = l.handle();
    let (mut a, mut handle) = mock::spawn_layer::<&str, &str, _>(l);
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    let fut = a.call("hello");
    let (req, _send) = handle.next_request().await.unwrap();
    assert_eq!(req, "hello");
    assert_pending!(b.poll_ready());
    drop(fut);
    assert!(b.is_woken());
    assert_ready_ok!(b.poll_ready());
    assert_eq!(h.in_flight(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_frees_the_permit() {
    let l = layer(1);
    let h = l.handle();
    let (mut a, mut handle) = mock::spawn_layer::<&str, &str, _>(l);
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    let mut fut = tokio_test::task::spawn(a.call("x"));
    let (_, send) = handle.next_request().await.unwrap();
    assert_pending!(b.poll_ready());
    send.send_error("boom");
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert!(b.is_woken());
    assert_ready_ok!(b.poll_ready());
    assert_eq!(h.in_flight(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_woken_in_order() {
    let l = layer(1);
    let (mut first, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut waiters: Vec<_> = (0..4).map(|_| Some(first.clone())).collect();
    assert_ready_ok!(first.poll_ready());
    for w in waiters.iter_mut().flatten() {
        assert_pending!(w.poll_ready());
    }
    drop(first);
    for i in 0..waiters.len() {
        let mut head = waiters[i].take().unwrap();
        // Only the head of the line gets the permit.
        assert!(head.is_woken(), "waiter {i}");
        assert_ready_ok!(head.poll_ready(), "waiter {i}");
        for w in waiters.iter_mut().flatten() {
            assert!(!w.is_woken());
            assert_pending!(w.poll_ready());
        }
        // Give it back by dropping the reserving service.
        drop(head);
    }
}

// === admission ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exactly_n_in_flight_with_n_plus_m_callers() {
    const N: usize = 3;
    const M: usize = 5;
    let l =
        BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(N).build().unwrap();
    let h = l.handle();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let svc = tower::ServiceBuilder::new().layer(l).service_fn({
        let (running, peak, gate) = (running.clone(), peak.clone(), gate.clone());
        move |(): ()| {
            let (running, peak, gate) = (running.clone(), peak.clone(), gate.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                gate.notified().await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(())
            }
        }
    });
    let tasks: Vec<_> = (0..N + M).map(|_| tokio::spawn(svc.clone().oneshot(()))).collect();
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(running.load(Ordering::SeqCst), N);
    assert_eq!(h.in_flight(), N);
    assert_eq!(h.queued(), M);
    // Release calls one at a time until all are done.
    while running.load(Ordering::SeqCst) > 0 || h.queued() > 0 {
        gate.notify_one();
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        assert!(running.load(Ordering::SeqCst) <= N);
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), N);
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.snapshot().waited, M as u64);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn queue_order_is_fifo_across_tasks() {
    let l = layer(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let svc = tower::ServiceBuilder::new().layer(l).service_fn({
        let (order, gate) = (order.clone(), gate.clone());
        move |i: usize| {
            let (order, gate) = (order.clone(), gate.clone());
            async move {
                order.lock().unwrap().push(i);
                gate.acquire().await.unwrap().forget();
                Ok::<_, std::convert::Infallible>(())
            }
        }
    });
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(tokio::spawn(svc.clone().oneshot(i)));
        // Each caller joins the queue before the next one starts.
        tokio::task::yield_now().await;
    }
    gate.add_permits(6);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn full_queue_rejects_with_queue_full() {
    let l = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .name("db")
        .max_concurrent(1)
        .max_queue(1)
        .build()
        .unwrap();
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut b = a.clone();
    let mut c = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    assert_eq!(h.queued(), 1);
    // The third caller is refused at once: `poll_ready` is Ready and `call` fails.
    assert_ready_ok!(c.poll_ready());
    let err = c.call(()).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::QueueFull));
    assert!(err.to_string().contains("`db`"));
    assert_eq!(h.snapshot().rejected_queue_full, 1);
    assert_eq!(h.queued(), 1);
    // The refused service can queue again once there is room.
    drop(b);
    assert_eq!(h.queued(), 0);
    assert_pending!(c.poll_ready());
    assert_eq!(h.queued(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn expired_wait_rejects_with_wait_timed_out() {
    let l = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::wait(Duration::from_millis(100)))
        .build()
        .unwrap();
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(b.poll_ready());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(b.is_woken());
    assert_ready_ok!(b.poll_ready());
    let err = b.call(()).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::WaitTimedOut));
    assert_eq!(h.queued(), 0);
    assert_eq!(h.in_flight(), 1);
    assert_eq!(h.snapshot().rejected_wait_timed_out, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_that_succeeds_in_time_records_its_wait() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let l = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::wait(Duration::from_millis(100)))
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    tokio::time::advance(Duration::from_millis(40)).await;
    drop(a);
    assert_ready_ok!(b.poll_ready());
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            BulkheadEvent::Acquired { wait: Duration::ZERO },
            BulkheadEvent::Acquired { wait: Duration::from_millis(40) }
        ]
    );
    assert_eq!(h.snapshot().max_wait, Duration::from_millis(40));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn zero_wait_sheds() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let l = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::Refuse)
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_ready_ok!(b.poll_ready());
    let err = b.call(()).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    assert_eq!(h.queued(), 0);
    assert_eq!(h.snapshot().rejected_no_permit, 1);
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&BulkheadEvent::Rejected { reason: BulkheadFullReason::NoPermit })
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue_at_once() {
    let l = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(1)
        .max_queue(1)
        .build()
        .unwrap();
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    let mut b = a.clone();
    let mut c = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    drop(b);
    assert_eq!(h.queued(), 0);
    assert_pending!(c.poll_ready());
    drop(a);
    // The permit goes to the next waiter, not to the one that left.
    assert_ready_ok!(c.poll_ready());
    assert_eq!(h.in_flight(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_inner_future_releases_its_permit() {
    let l = layer(1);
    let h = l.handle();
    let svc = tower::ServiceBuilder::new().layer(l).service_fn(|panic: bool| async move {
        assert!(!panic, "inner service panicked");
        Ok::<_, std::convert::Infallible>(())
    });
    let joined = tokio::spawn(svc.clone().oneshot(true)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(h.in_flight(), 0);
    svc.oneshot(false).await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_inner_poll_ready_error_frees_the_permit() {
    let l = layer(1);
    let h = l.handle();
    let (mut a, mut handle) = mock::spawn_layer::<(), (), _>(l);
    handle.send_error("not ready");
    let err = assert_ready!(a.poll_ready()).unwrap_err();
    assert_eq!(err.to_string(), "not ready");
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn services_built_from_one_handle_share_the_pool() {
    let l = layer(1);
    let h = l.handle();
    let (mut a, _ha) = mock::spawn_layer::<(), (), _>(l);
    let (mut b, _hb) = mock::spawn_layer::<&str, (), _>(h.layer());
    let (mut c, _hc) = mock::spawn_layer::<u8, (), _>(BulkheadLayer::from_handle(&h));
    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    assert_pending!(c.poll_ready());
    assert_eq!(h.queued(), 2);
    drop(a);
    assert_ready_ok!(b.poll_ready());
    assert_pending!(c.poll_ready());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clone_starts_unready() {
    let l = layer(2);
    let h = l.handle();
    let (mut a, _handle) = mock::spawn_layer::<(), (), _>(l);
    assert_ready_ok!(a.poll_ready());
    let b = a.clone();
    assert_eq!(h.in_flight(), 1);
    drop(b);
    assert_eq!(h.in_flight(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn into_inner_gives_the_reservation_back() {
    let l = layer(1);
    let h = l.handle();
    let (inner, _handle) = mock::pair::<(), ()>();
    let mut svc = tower::Layer::layer(&l, inner);
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    assert_eq!(h.in_flight(), 1);
    let _inner = svc.into_inner();
    assert_eq!(h.in_flight(), 0);
}

#[test]
fn invalid_settings_are_refused() {
    let err = BulkheadLayer::builder().max_concurrent(0).build().unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    let err =
        BulkheadLayer::builder().max_concurrent(1).keyed(|(): &()| Some(())).max_keys(0).build().unwrap_err();
    assert_eq!(err.field(), "max_keys");
}

#[cfg(feature = "serde")]
#[test]
fn config_deserializes_and_validates() {
    let c: palisade_bulkhead::BulkheadConfig = serde_json::from_str(r#"{ "max_concurrent": 0 }"#).unwrap();
    assert_eq!(c.into_builder().build().unwrap_err().field(), "max_concurrent");
    let c: palisade_bulkhead::BulkheadConfig =
        serde_json::from_str(r#"{ "name": "x", "max_concurrent": 3, "when_full": "refuse" }"#).unwrap();
    let h = c.into_builder().build().unwrap().handle();
    assert_eq!((h.name(), h.max_concurrent()), ("x", 3));
    assert!(serde_json::from_str::<palisade_bulkhead::BulkheadConfig>(r#"{ "when_full": { "wait": "5" } }"#)
        .is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn http_mapping_answers_503() {
    use palisade_core::respond::HttpRejectionLayer;
    let l = BulkheadLayer::builder().max_concurrent(1).when_full(WhenFull::Refuse).build().unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    let svc = tower::ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(l).service_fn({
        let gate = gate.clone();
        move |_: http::Request<()>| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }
        }
    });
    let first = tokio::spawn(svc.clone().oneshot(http::Request::new(())));
    tokio::task::yield_now().await;
    let res = svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 503);
    gate.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn call_without_poll_ready_refuses_without_panicking() {
    let layer = layer(1);
    let handle = layer.handle();
    let (inner, mut mock) = mock::pair::<&str, &str>();
    mock.allow(1);
    let mut svc = tower::Layer::layer(&layer, inner);

    // A broken caller skips poll_ready: a refusal, not a panic, and the inner service it
    // never polled is not called.
    let err = svc.call("skipped").await.unwrap_err();
    let full = err.downcast_ref::<palisade_core::rejection::BulkheadFull>().expect("BulkheadFull");
    assert_eq!(full.reason(), BulkheadFullReason::NoPermit);
    assert_eq!(handle.in_flight(), 0);

    // The service still works for a caller that follows the contract.
    let fut = svc.ready().await.unwrap().call("polled");
    let (req, send) = mock.next_request().await.unwrap();
    assert_eq!(req, "polled");
    send.send_response("done");
    assert_eq!(fut.await.unwrap(), "done");
}
