#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! ReadyCall: readiness first, then the call, then the call's future; dropping it at any
//! point releases what it holds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::service::ReadyCall;
use palisade_core::BoxError;
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok, task};
use tower::limit::ConcurrencyLimit;
use tower::{Service, ServiceExt};
use tower_test::mock;

#[tokio::test]
async fn waits_for_readiness_then_calls_once() {
    let (svc, mut handle) = mock::pair::<&'static str, &'static str>();
    handle.allow(0);
    let mut call = task::spawn(ReadyCall::new(svc, "hello"));
    assert_eq!(call.request(), Some(&"hello"));
    assert!(!call.is_called());
    assert_pending!(call.poll());
    assert_pending!(handle.poll_request(), "not sent before the service is ready");

    handle.allow(1);
    assert!(call.is_woken(), "readiness wakes the future");
    assert_pending!(call.poll());
    assert!(call.is_called());
    assert_eq!(call.request(), None);
    let (req, send) = assert_ready!(handle.poll_request()).unwrap();
    assert_eq!(req, "hello");
    assert_pending!(call.poll(), "waits for the response");

    send.send_response("world");
    assert!(call.is_woken());
    assert_eq!(assert_ready_ok!(call.poll()), "world");
    assert_pending!(call.poll(), "polled after completion: stays pending, no panic");
    assert!(
        matches!(handle.poll_request(), Poll::Ready(None)),
        "exactly one call, and the service was dropped with the call done"
    );
}

#[tokio::test]
async fn a_poll_ready_error_ends_it_without_sending() {
    let (svc, mut handle) = mock::pair::<&'static str, &'static str>();
    handle.allow(0);
    let mut call = task::spawn(ReadyCall::new(svc, "hello"));
    assert_pending!(call.poll());
    handle.send_error("not ready");
    let err = assert_ready_err!(call.poll());
    assert_eq!(err.to_string(), "not ready");
    assert!(
        matches!(handle.poll_request(), Poll::Ready(None)),
        "the request was never sent, and the service was dropped"
    );
}

#[tokio::test]
async fn a_call_error_is_returned() {
    let (svc, mut handle) = mock::pair::<&'static str, &'static str>();
    let mut call = task::spawn(ReadyCall::new(svc, "hello"));
    assert_pending!(call.poll());
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_error("boom");
    assert_eq!(assert_ready_err!(call.poll()).to_string(), "boom");
}

#[tokio::test]
async fn dropped_while_waiting_for_readiness_releases_nothing_it_did_not_hold() {
    // A limit of one, taken by a first call: the second ReadyCall waits for the permit.
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let limited = ConcurrencyLimit::new(svc, 1);
    let mut first = task::spawn(ReadyCall::new(limited.clone(), 1));
    assert_pending!(first.poll());
    let mut second = task::spawn(ReadyCall::new(limited.clone(), 2));
    assert_pending!(second.poll());
    drop(second);

    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 1);
    send.send_response(10);
    assert_eq!(assert_ready_ok!(first.poll()), 10);

    // The permit is free again: a third call gets it; 2 was never sent.
    let mut third = task::spawn(ReadyCall::new(limited, 3));
    assert_pending!(third.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 3);
    send.send_response(30);
    assert_eq!(assert_ready_ok!(third.poll()), 30);
}

/// A service whose response future never ends and says when it is dropped.
#[derive(Clone, Debug)]
struct Forever(Arc<AtomicBool>);

struct Never(Arc<AtomicBool>);

impl Future for Never {
    type Output = Result<(), BoxError>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Pending
    }
}

impl Drop for Never {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Service<()> for Forever {
    type Response = ();
    type Error = BoxError;
    type Future = Never;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, (): ()) -> Never {
        Never(self.0.clone())
    }
}

#[tokio::test]
async fn dropping_it_after_the_call_cancels_the_inner_call_and_frees_the_permit() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut limited = ConcurrencyLimit::new(Forever(dropped.clone()), 1);
    let mut call = task::spawn(ReadyCall::new(limited.clone(), ()));
    assert_pending!(call.poll());
    assert!(call.is_called());
    let mut probe = task::spawn(limited.ready());
    assert_pending!(probe.poll(), "the call holds the only permit");
    drop(probe);
    assert!(!dropped.load(Ordering::SeqCst));
    drop(call);
    assert!(dropped.load(Ordering::SeqCst), "the inner future is dropped: the call is cancelled");
    let mut probe = task::spawn(limited.ready());
    assert_ready_ok!(probe.poll());
}

#[test]
fn debug_names_the_state() {
    let (svc, _handle) = mock::pair::<u32, u32>();
    assert_eq!(format!("{:?}", ReadyCall::new(svc, 1)), r#"ReadyCall { state: "waiting_for_ready" }"#);
}
