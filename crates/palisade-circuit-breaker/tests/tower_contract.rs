#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
use palisade_core::BoxError;
use support::rejection;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok, task};
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

const SEC: Duration = Duration::from_secs(1);

fn breaker(trials: u32) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .half_open_trials(trials)
        .build()
        .unwrap()
}

/// Opens the breaker with one failed call and waits out the open state.
async fn open_then_wait(
    svc: &mut mock::Spawn<
        palisade_circuit_breaker::CircuitBreaker<
            mock::Mock<&'static str, &'static str>,
            palisade_core::DefaultClassifier,
        >,
    >,
    handle: &mut mock::Handle<&'static str, &'static str>,
) {
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call("fail"));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("boom");
    assert_ready_err!(fut.poll());
    advance(SEC).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_is_the_inner_services() {
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker(1));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
    // An inner readiness error comes out boxed.
    handle.send_error("not ready");
    let err: BoxError = assert_ready_err!(svc.poll_ready());
    assert_eq!(err.to_string(), "not ready");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rejection_is_a_ready_future_and_the_inner_service_is_not_called() {
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker(1));
    open_then_wait(&mut svc, &mut handle).await;
    // Half-open: the one trial is in flight ...
    handle.allow(2);
    assert_ready_ok!(svc.poll_ready());
    let mut trial = task::spawn(svc.call("trial"));
    let (_, trial_reply) = handle.next_request().await.unwrap();
    assert_pending!(trial.poll());
    // ... so the next call is rejected at once, without reaching the mock.
    assert_ready_ok!(svc.poll_ready());
    let mut rejected = task::spawn(svc.call("extra"));
    let res: Result<&str, BoxError> = assert_ready!(rejected.poll());
    let open = rejection_of(&res).expect("rejected");
    // Positive, never `Retry-After: 0`: the last open wait (1 s) while it is shorter than
    // the time left in half-open (60 s by default).
    assert_eq!(open.retry_after(), SEC);
    assert!(handle.poll_request().is_pending());
    trial_reply.send_response("ok");
    assert_eq!(assert_ready_ok!(trial.poll()), "ok");
}

fn rejection_of<'a>(
    res: &'a Result<&str, BoxError>,
) -> Option<&'a palisade_circuit_breaker::error::CircuitOpen> {
    res.as_ref().err().and_then(|e| e.downcast_ref())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn half_open_admits_exactly_the_configured_trials() {
    let layer = breaker(3);
    let handle = layer.handle();
    let (mut svc, mut mock) = mock::spawn_with::<&str, &str, _, _>(|s| layer.layer(s));
    open_then_wait(&mut svc, &mut mock).await;
    mock.allow(100);

    let mut trials = Vec::new();
    let mut rejected = 0;
    for _ in 0..10 {
        assert_ready_ok!(svc.poll_ready());
        let mut fut = task::spawn(svc.call("trial"));
        match fut.poll() {
            std::task::Poll::Ready(Err(e)) if e.is::<palisade_circuit_breaker::error::CircuitOpen>() => {
                rejected += 1;
            }
            std::task::Poll::Pending => trials.push(fut),
            other @ std::task::Poll::Ready(_) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((trials.len(), rejected), (3, 7));
    assert_eq!(handle.snapshot().trials_in_flight, 3);
    assert_eq!(handle.state(), CircuitState::HalfOpen);

    // Dropping a trial's future gives its slot back: one more trial may pass.
    drop(trials.pop());
    assert_eq!(handle.snapshot().trials_in_flight, 2);
    assert_ready_ok!(svc.poll_ready());
    let mut replacement = task::spawn(svc.call("trial"));
    assert_pending!(replacement.poll());
    assert_ready_ok!(svc.poll_ready());
    let mut extra = task::spawn(svc.call("extra"));
    assert_ready_err!(extra.poll());

    // Three successes close the breaker.
    for _ in 0..4 {
        let (req, reply) = mock.next_request().await.unwrap();
        assert_eq!(req, "trial");
        reply.send_response("ok");
    }
    for mut t in trials {
        assert_ready_ok!(t.poll());
    }
    assert_ready_ok!(replacement.poll());
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_trial_frees_its_slot() {
    let layer = breaker(1);
    let handle = layer.handle();
    let svc = layer.layer(tower::service_fn(|fail: bool| async move {
        if fail {
            Err::<(), BoxError>("boom".into())
        } else {
            tokio::task::yield_now().await;
            panic!("the inner future panics");
        }
    }));
    svc.clone().oneshot(true).await.unwrap_err();
    advance(SEC).await;
    let panicked = tokio::spawn(svc.clone().oneshot(false)).await.unwrap_err();
    assert!(panicked.is_panic());
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(handle.snapshot().trials_in_flight, 0);
    assert_eq!(handle.snapshot().ignored, 1);
    // The slot is free again; a failing trial re-opens.
    let res = svc.clone().oneshot(true).await;
    assert!(res.unwrap_err().downcast_ref::<palisade_circuit_breaker::error::CircuitOpen>().is_none());
    assert_eq!(handle.state(), CircuitState::Open);
}

// The tower five, with a concurrency limit inside the breaker holding the capacity.

fn limited() -> (
    impl Service<
            support::Call,
            Response = (),
            Error = BoxError,
            Future = impl std::future::Future<Output = Result<(), BoxError>> + Send,
        > + Clone,
    palisade_circuit_breaker::CircuitBreakerHandle,
) {
    let layer = CircuitBreakerLayer::builder().consecutive_failures(5).build().unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .layer(ConcurrencyLimitLayer::new(1))
        .service(support::backend(Arc::default()));
    (svc, handle)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reserve_without_calling_holds_the_inner_capacity() {
    let (svc, _) = limited();
    let mut a = task::spawn(svc.clone());
    let mut b = task::spawn(svc.clone());
    assert_ready_ok!(a.enter(|cx, mut s| s.poll_ready(cx)));
    assert_pending!(b.enter(|cx, mut s| s.poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_service_frees_its_reservation() {
    let (svc, _) = limited();
    let mut a = task::spawn(svc.clone());
    let mut b = task::spawn(svc.clone());
    assert_ready_ok!(a.enter(|cx, mut s| s.poll_ready(cx)));
    assert_pending!(b.enter(|cx, mut s| s.poll_ready(cx)));
    drop(a);
    assert!(b.is_woken());
    assert_ready_ok!(b.enter(|cx, mut s| s.poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_response_future_frees_its_capacity() {
    let (mut svc, handle) = limited();
    let mut other = task::spawn(svc.clone());
    svc.ready().await.unwrap();
    let mut fut = task::spawn(svc.call(support::Call { fail: false, delay: SEC }));
    assert_pending!(fut.poll());
    assert_pending!(other.enter(|cx, mut s| s.poll_ready(cx)));
    drop(fut);
    assert!(other.is_woken());
    assert_ready_ok!(other.enter(|cx, mut s| s.poll_ready(cx)));
    assert_eq!(handle.snapshot().ignored, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_frees_the_capacity_and_is_recorded() {
    let (mut svc, handle) = limited();
    let mut other = task::spawn(svc.clone());
    svc.ready().await.unwrap();
    let fut = svc.call(support::FAIL);
    assert_pending!(other.enter(|cx, mut s| s.poll_ready(cx)));
    assert_eq!(fut.await.unwrap_err().to_string(), "boom");
    assert!(other.is_woken());
    assert_ready_ok!(other.enter(|cx, mut s| s.poll_ready(cx)));
    assert_eq!(handle.snapshot().failures, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_woken_in_order() {
    let (mut svc, _) = limited();
    svc.ready().await.unwrap();
    let fut = svc.call(support::Call { fail: false, delay: SEC });
    let mut waiters: Vec<_> = (0..3).map(|_| task::spawn(svc.clone())).collect();
    for w in &mut waiters {
        assert_pending!(w.enter(|cx, mut s| s.poll_ready(cx)));
    }
    let running = tokio::spawn(fut);
    advance(SEC).await;
    running.await.unwrap().unwrap();
    for i in 0..3 {
        assert!(waiters[i].is_woken(), "waiter {i} woken");
        assert_ready_ok!(waiters[i].enter(|cx, mut s| s.poll_ready(cx)));
        for later in &mut waiters[i + 1..] {
            assert_pending!(later.enter(|cx, mut s| s.poll_ready(cx)));
        }
        let next = waiters[i].enter(|_, mut s| s.call(support::OK));
        next.await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rejections_are_answered_as_503_by_the_http_layer() {
    let layer = CircuitBreakerLayer::builder().consecutive_failures(1).wait_in_open(2 * SEC).build().unwrap();
    layer.handle().force_open();
    let svc = ServiceBuilder::new()
        .layer(palisade_core::respond::HttpRejectionLayer::new())
        .layer(layer)
        .service(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(String::new()))
        }));
    let res = svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "2");
    let _ = rejection;
}
