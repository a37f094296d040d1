//! Hostile cases: cancellation racing poll_ready, concurrent nested closes, hanging
//! teardowns, calls without poll_ready, extreme deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use palisade_core::rejection::Closed;
use palisade_scope::{Scope, ScopeService};
use tokio::time::sleep;
use tokio_test::{assert_pending, task};
use tower::{Service, ServiceExt};
use tower_test::mock;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// A `poll_ready` waiting on an inner service that never becomes ready is woken by the
/// scope's cancellation and answers `Closed` (no lost wake-up).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancel_wakes_a_poll_ready_waiting_on_the_inner_service() {
    let (inner, mut handle) = mock::pair::<u32, u32>();
    handle.allow(0);
    let scope = Scope::new("s");
    let mut svc = ScopeService::new(inner, scope.clone());
    let mut ready = task::spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    assert_pending!(ready.poll());
    scope.cancel();
    assert!(ready.is_woken(), "cancellation must wake a pending poll_ready");
    match ready.poll() {
        Poll::Ready(Err(e)) => assert!(e.is::<Closed>()),
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// Same for a `poll_ready` waiting for a permit of the scope's limit held by a request
/// nobody polls: a detached child's timeout (token only, not `closing`) must wake it too.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timeout_wakes_a_poll_ready_waiting_for_a_permit() {
    let root = Scope::new("root");
    let scope = Scope::builder("limited").limit(1).timeout(secs(5)).detached_from(&root).unwrap();
    let mut svc =
        ScopeService::new(tower::service_fn(|x: u32| async move { Ok::<_, Closed>(x) }), scope.clone());
    svc.ready().await.unwrap();
    let _held = svc.call(1); // holds the only permit, never polled
    let mut other = svc.clone();
    let mut ready = task::spawn(std::future::poll_fn(|cx| other.poll_ready(cx)));
    assert_pending!(ready.poll());
    tokio::time::advance(secs(6)).await;
    settle().await;
    assert!(scope.is_cancelled());
    assert!(ready.is_woken(), "the scope's timeout must wake a pending poll_ready");
    match ready.poll() {
        Poll::Ready(Err(e)) => assert!(e.is::<Closed>()),
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// `call` without `poll_ready` on a limited scope never panics and never exceeds the limit.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn call_without_poll_ready_does_not_bypass_the_limit() {
    let scope = Scope::builder("limited").limit(1).build().unwrap();
    let mut svc = ScopeService::new(
        tower::service_fn(|x: u32| async move {
            sleep(secs(10)).await;
            Ok::<_, Closed>(x)
        }),
        scope.clone(),
    );
    let first = svc.call(1);
    let second = svc.call(2);
    let (a, b) = tokio::join!(first, second);
    // At most one ran under the limit of 1; the other was refused with a typed error.
    assert!(a.is_ok() ^ b.is_ok(), "{a:?} {b:?}");
}

/// A child's close and its parent's close at the same time: the parent's resources are
/// torn down only after the child's teardown (started by the child's close) finished.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn concurrent_child_and_parent_close_keep_teardown_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let root = Scope::new("root");
    let child = root.child();
    let l = log.clone();
    root.provide("db", move |_| async move {
        l.lock().unwrap().push("db");
    })
    .unwrap();
    let l = log.clone();
    child
        .provide("session", move |_| async move {
            sleep(secs(1)).await;
            l.lock().unwrap().push("session");
        })
        .unwrap();
    let (a, b) = tokio::join!(child.close(secs(1)), root.close(secs(1)));
    assert_eq!(a.torn_down + b.torn_down, 2);
    assert_eq!(*log.lock().unwrap(), ["session", "db"]);
}

/// A teardown that never ends cannot make `close` wait forever: each teardown gets the
/// drain deadline, then it is abandoned (dropped) and the next one runs.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hanging_teardown_is_bounded_by_the_deadline() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let scope = Scope::new("s");
    let l = log.clone();
    scope
        .provide(1u8, move |_| async move {
            l.lock().unwrap().push("first");
        })
        .unwrap();
    scope.provide(2u16, |_| std::future::pending::<()>()).unwrap();
    let report = tokio::time::timeout(secs(3600), scope.close(secs(5))).await.expect("close must end");
    assert_eq!(report.torn_down, 1);
    assert_eq!(report.teardowns_abandoned, 1);
    assert_eq!(*log.lock().unwrap(), ["first"]);
}

/// `close(Duration::ZERO)` cancels in-flight requests at once; `close(Duration::MAX)` over
/// an idle scope returns at once (no overflow, no wait).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_with_zero_and_max_deadlines() {
    let scope = Scope::new("s");
    let svc = ScopeService::new(
        tower::service_fn(|x: u32| async move {
            sleep(secs(10)).await;
            Ok::<_, Closed>(x)
        }),
        scope.clone(),
    );
    let mut fut = task::spawn(svc.oneshot(1));
    assert_pending!(fut.poll());
    let report = scope.close(Duration::ZERO).await;
    assert_eq!((report.finished, report.cancelled), (0, 1));
    match fut.poll() {
        Poll::Ready(Err(e)) => assert!(e.is::<palisade_scope::error::Cancelled>()),
        other => panic!("{other:?}"),
    }
    let idle = Scope::new("idle");
    let started = tokio::time::Instant::now();
    let report = idle.close(Duration::MAX).await;
    assert!(report.drained());
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Spawning in a closed scope answers `Closed`; a scope closed while a spawned task waits
/// for a turn under its limit cancels the waiter (no task left behind).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn spawn_after_close_and_waiting_for_a_turn() {
    let scope = Scope::builder("s").limit(1).build().unwrap();
    let busy = scope.spawn(async { sleep(secs(3600)).await });
    let waiting = scope.spawn(async { 7 });
    settle().await;
    let report = scope.close(secs(1)).await;
    assert_eq!(report.cancelled, 2);
    assert!(busy.await.unwrap_err().is::<palisade_scope::error::Cancelled>());
    assert!(waiting.await.unwrap_err().is::<palisade_scope::error::Cancelled>());
    assert!(scope.spawn(async { 1 }).await.unwrap_err().is::<Closed>());
    assert_eq!(scope.in_flight(), 0);
}

/// A task of the scope that closes its own scope (a shutdown trigger spawned in it) does
/// not wait the whole deadline for itself, and the teardown runs even though the caller is
/// cancelled at the end of the drain.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_called_from_a_task_of_the_scope() {
    let torn = Arc::new(Mutex::new(false));
    let scope = Scope::new("s");
    let t = torn.clone();
    scope
        .provide(1u8, move |_| async move {
            *t.lock().unwrap() = true;
        })
        .unwrap();
    let child = scope.child();
    let trigger = child.spawn({
        let scope = scope.clone();
        async move { scope.close(Duration::from_secs(3600)).await }
    });
    let started = tokio::time::Instant::now();
    let _ = trigger.await;
    settle().await;
    assert!(started.elapsed() < Duration::from_secs(3600), "close waited for itself");
    assert!(*torn.lock().unwrap(), "the teardown must run");
}

/// An inner future that panics while an `on_cancel` hook that also panics runs during the
/// unwinding: the second panic is contained (no abort), the caller sees the first.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_hook_during_an_inner_panic_does_not_abort() {
    use futures_util::FutureExt;
    use palisade_scope::hooks::HooksLayer;
    use tower::Layer;
    let svc = tower::service_fn(|_: u32| async move {
        tokio::task::yield_now().await;
        panic!("inner");
        #[allow(unreachable_code)]
        Ok::<u32, std::io::Error>(0)
    });
    let layer = HooksLayer::new()
        .on_cancel(|_: Duration| panic!("cancel hook"))
        .on_dispose(|| panic!("dispose hook"));
    let mut svc = layer.layer(svc);
    let fut = svc.ready().await.unwrap().call(1);
    let caught = std::panic::AssertUnwindSafe(fut).catch_unwind().await;
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"inner"));
    drop(svc);
}
