#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::rejection::{find_rejection, Closed, RejectionKind};
use palisade_core::respond::http_response_for;
use palisade_scope::error::Cancelled;
use palisade_scope::{Scope, ScopeLayer};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_flight_requests_end_with_cancelled_and_inner_work_stops() {
    let scope = Scope::new("server");
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let mut svc = ScopeLayer::new(scope.clone()).layer(svc);
    handle.allow(1);
    assert_ready_ok!(tokio_test::task::spawn(()).enter(|cx, _| svc.poll_ready(cx)));
    let mut fut = tokio_test::task::spawn(svc.call(1));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 1);
    assert_pending!(fut.poll());
    assert_eq!(scope.in_flight(), 1);
    scope.cancel();
    assert!(fut.is_woken());
    let err = match fut.poll() {
        std::task::Poll::Ready(Err(e)) => e,
        other => panic!("expected Cancelled, got {other:?}"),
    };
    assert!(err.is::<Cancelled>());
    drop(send);
    assert_eq!(scope.in_flight(), 0);
    // New requests are refused with `Closed` from poll_ready and from call.
    let refused = tokio_test::task::spawn(()).enter(|cx, _| svc.poll_ready(cx));
    match refused {
        std::task::Poll::Ready(Err(e)) => assert!(e.is::<Closed>()),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(svc.call(2).await.unwrap_err().is::<Closed>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn both_errors_map_to_503() {
    let closed: palisade_core::BoxError = Closed::new("server").into();
    let cancelled: palisade_core::BoxError = Cancelled::new("server").into();
    for err in [closed, cancelled] {
        assert_eq!(find_rejection(err.as_ref()).unwrap().kind(), RejectionKind::Closed);
        let res: http::Response<()> = http_response_for(&err);
        assert_eq!(res.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_waits_for_requests_up_to_the_deadline() {
    let scope = Scope::new("server");
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let svc = ScopeLayer::new(scope.clone()).layer(tower::service_fn(move |secs: u64| {
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(secs)
        }
    }));
    let calls: Vec<_> = [1, 2, 30, 40].into_iter().map(|s| tokio::spawn(svc.clone().oneshot(s))).collect();
    tokio::task::yield_now().await;
    assert_eq!(scope.in_flight(), 4);
    let report = scope.close(Duration::from_secs(10)).await;
    assert_eq!((report.finished, report.cancelled), (2, 2));
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap().map_err(|e| e.is::<Cancelled>()));
    }
    assert_eq!(results, [Ok(1), Ok(2), Err(true), Err(true)]);
    assert_eq!(finished.load(Ordering::SeqCst), 2);
    assert_eq!(scope.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_response_future_leaves_flight() {
    let scope = Scope::new("server");
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let mut svc = ScopeLayer::new(scope.clone()).layer(svc);
    handle.allow(1);
    svc.ready().await.unwrap();
    let fut = svc.call(1);
    assert_eq!(scope.in_flight(), 1);
    drop(fut);
    assert_eq!(scope.in_flight(), 0);
    let report = scope.close(Duration::from_secs(1)).await;
    assert!(report.drained());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn inner_errors_pass_through() {
    let scope = Scope::new("server");
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let mut svc = ScopeLayer::new(scope.clone()).layer(svc);
    handle.allow(1);
    svc.ready().await.unwrap();
    let fut = svc.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("inner"));
    let err = fut.await.unwrap_err();
    assert_eq!(err.to_string(), "inner");
    assert_eq!(scope.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancellation_drops_the_inner_future() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let scope = Scope::new("server");
    let svc = ScopeLayer::new(scope.clone()).layer(tower::service_fn(move |()| {
        let flag = Flag(d.clone());
        async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, std::io::Error>(())
        }
    }));
    let call = tokio::spawn(svc.oneshot(()));
    tokio::task::yield_now().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    scope.cancel();
    assert!(call.await.unwrap().unwrap_err().is::<Cancelled>());
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_scope_limit_is_reserved_by_poll_ready_and_released_by_the_future() {
    use std::task::Poll;
    let scope = Scope::builder("server").limit(1).build().unwrap();
    let (svc, mut handle) = mock::pair::<u32, u32>();
    handle.allow(10);
    let mut a = ScopeLayer::new(scope.clone()).layer(svc);
    let mut b = a.clone();
    let mut task = tokio_test::task::spawn(());
    // a reserves the only permit without calling: b waits.
    assert!(matches!(task.enter(|cx, _| a.poll_ready(cx)), Poll::Ready(Ok(()))));
    assert_pending!(task.enter(|cx, _| b.poll_ready(cx)));
    // Spent by a call; released when its future ends with an error.
    let fut = a.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("x"));
    assert!(fut.await.is_err());
    assert!(task.is_woken());
    assert!(matches!(task.enter(|cx, _| b.poll_ready(cx)), Poll::Ready(Ok(()))));
    // Dropping a service with a reserved permit frees it.
    drop(b);
    assert!(matches!(task.enter(|cx, _| a.poll_ready(cx)), Poll::Ready(Ok(()))));
    // Dropping a response future frees it.
    let fut = a.call(2);
    let mut c = a.clone();
    assert_pending!(task.enter(|cx, _| c.poll_ready(cx)));
    drop(fut);
    assert!(matches!(task.enter(|cx, _| c.poll_ready(cx)), Poll::Ready(Ok(()))));
    // Tasks share the budget: with c holding the permit, a task waits.
    let job = scope.spawn(async { 7 });
    tokio::task::yield_now().await;
    assert!(!job.is_finished());
    drop(c);
    assert_eq!(job.await.unwrap(), 7);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refused_poll_ready_is_not_spent_by_a_later_call() {
    let scope = Scope::new("server");
    let (svc, mut handle) = mock::pair::<u32, u32>();
    handle.allow(10);
    let mut svc = ScopeLayer::new(scope.clone()).layer(svc);
    let mut task = tokio_test::task::spawn(());
    assert!(matches!(task.enter(|cx, _| svc.poll_ready(cx)), std::task::Poll::Ready(Ok(()))));
    scope.cancel();
    assert!(matches!(task.enter(|cx, _| svc.poll_ready(cx)), std::task::Poll::Ready(Err(_))));
    assert!(svc.call(1).await.unwrap_err().is::<Closed>());
}
