//! The tower contract through the fallback layer: the inner `ConcurrencyLimit` reserves a
//! permit in `poll_ready`, and the layer must neither leak nor steal it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use palisade_core::BoxError;
use palisade_fallback::{FallbackContext, FallbackLayer};
use tokio::sync::oneshot;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

type Inner = ConcurrencyLimit<mock::Mock<u32, u32>>;

fn stack(
) -> (impl Service<u32, Response = u32, Error = BoxError> + Clone + std::fmt::Debug, mock::Handle<u32, u32>) {
    let (mock, handle) = mock::pair::<u32, u32>();
    let layer = FallbackLayer::builder()
        .fallback_fn(|_: FallbackContext<u32, u32>| async { Ok::<_, BoxError>(99) })
        .build()
        .unwrap();
    let svc: palisade_fallback::Fallback<Inner, _, _> = layer.layer(ConcurrencyLimit::new(mock, 1));
    (svc, handle)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reserve_without_calling_holds_the_permit() {
    let (mut a, _handle) = stack();
    let mut b = a.clone();
    assert_ready_ok!(task::spawn(a.ready()).poll());
    assert_pending!(task::spawn(b.ready()).poll());
    // Polling again keeps the same reservation.
    assert_ready_ok!(task::spawn(a.ready()).poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_service_frees_the_permit() {
    let (mut a, _handle) = stack();
    let mut b = a.clone();
    assert_ready_ok!(task::spawn(a.ready()).poll());
    let mut b_ready = task::spawn(b.ready());
    assert_pending!(b_ready.poll());
    drop(a);
    assert!(b_ready.is_woken());
    assert_ready_ok!(b_ready.poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_response_future_frees_the_permit() {
    let (mut a, mut handle) = stack();
    let mut b = a.clone();
    let fut = a.ready().await.unwrap().call(1);
    let (_req, _send) = handle.next_request().await.unwrap();
    let mut b_ready = task::spawn(b.ready());
    assert_pending!(b_ready.poll());
    drop(fut);
    assert!(b_ready.is_woken());
    assert_ready_ok!(b_ready.poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_frees_the_permit_before_the_fallback_answers() {
    let (mock, mut handle) = mock::pair::<u32, u32>();
    let (release, wait) = oneshot::channel::<()>();
    let wait = std::sync::Mutex::new(Some(wait));
    let layer = FallbackLayer::builder()
        .fallback_fn(move |_: FallbackContext<u32, u32>| {
            let wait = wait.lock().unwrap().take().unwrap();
            async move {
                wait.await.unwrap();
                Ok::<_, BoxError>(99)
            }
        })
        .build()
        .unwrap();
    let mut a = layer.layer(ConcurrencyLimit::new(mock, 1));
    let mut b = a.clone();
    let mut fut = task::spawn(a.ready().await.unwrap().call(1));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_error("inner failed");
    assert_pending!(fut.poll()); // the fallback now runs and waits
                                 // The inner call is over: its permit is back even though the answer is not.
    assert_ready_ok!(task::spawn(b.ready()).poll());
    release.send(()).unwrap();
    assert!(fut.is_woken());
    assert_eq!(assert_ready_ok!(fut.poll()), 99);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_woken_in_order() {
    let (mut a, mut handle) = stack();
    let mut b = a.clone();
    let mut c = a.clone();
    let fut_a = a.ready().await.unwrap().call(1);
    let mut b_ready = task::spawn(b.ready());
    let mut c_ready = task::spawn(c.ready());
    assert_pending!(b_ready.poll());
    assert_pending!(c_ready.poll());

    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(10);
    assert_eq!(fut_a.await.unwrap(), 10);
    assert!(b_ready.is_woken());
    assert_ready_ok!(b_ready.poll());
    assert_pending!(c_ready.poll());
    drop(b_ready);

    let fut_b = b.call(2);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(20);
    assert_eq!(fut_b.await.unwrap(), 20);
    assert!(c_ready.is_woken());
    assert_ready_ok!(c_ready.poll());
}
