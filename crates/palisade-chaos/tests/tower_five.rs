//! The tower contract through the chaos layer: the inner `ConcurrencyLimit` reserves a permit
//! in `poll_ready`; injected latency, faults and hangs must neither leak nor steal it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use palisade_chaos::{Chaos, ChaosLayer};
use tokio::time;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

type Stack = Chaos<ConcurrencyLimit<mock::Mock<u32, u32>>, u32, u32>;

fn stack(layer: &ChaosLayer<u32, u32>) -> (Stack, mock::Handle<u32, u32>) {
    let (mock, handle) = mock::pair::<u32, u32>();
    (layer.layer(ConcurrencyLimit::new(mock, 1)), handle)
}

fn quiet() -> ChaosLayer<u32, u32> {
    ChaosLayer::builder().seed(1).build().unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reserve_without_calling_holds_the_permit() {
    let (mut a, _handle) = stack(&quiet());
    let mut b = a.clone();
    assert_ready_ok!(task::spawn(a.ready()).poll());
    assert_pending!(task::spawn(b.ready()).poll());
    assert_ready_ok!(task::spawn(a.ready()).poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_service_frees_the_permit() {
    let (mut a, _handle) = stack(&quiet());
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
    let (mut a, mut handle) = stack(&quiet());
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
async fn dropping_a_delayed_future_frees_the_reserved_service() {
    let layer = ChaosLayer::builder().latency_rate(1.0).latency(Duration::from_secs(10)).build().unwrap();
    let (mut a, mut handle) = stack(&layer);
    let mut b = a.clone();
    let mut fut = task::spawn(a.ready().await.unwrap().call(1));
    assert_pending!(fut.poll());
    // During the delay the permit travels with the future, not with `a`...
    let mut b_ready = task::spawn(b.ready());
    assert_pending!(b_ready.poll());
    // ...and `a` holds a fresh un-ready clone.
    assert_pending!(task::spawn(a.ready()).poll());
    drop(fut);
    assert!(b_ready.is_woken());
    assert_ready_ok!(b_ready.poll());
    assert!(handle.poll_request().is_pending(), "the delayed call was never made");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_hanging_future_frees_the_permit() {
    let layer = ChaosLayer::builder().hang_rate(1.0).build().unwrap();
    let (mut a, mut handle) = stack(&layer);
    let mut b = a.clone();
    let mut fut = task::spawn(a.ready().await.unwrap().call(1));
    assert_pending!(fut.poll());
    let (_req, _send) = handle.next_request().await.unwrap();
    time::advance(Duration::from_secs(60)).await;
    assert_pending!(fut.poll());
    let mut b_ready = task::spawn(b.ready());
    assert_pending!(b_ready.poll());
    drop(fut);
    assert!(b_ready.is_woken());
    assert_ready_ok!(b_ready.poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_frees_the_permit() {
    let (mut a, mut handle) = stack(&quiet());
    let mut b = a.clone();
    let fut = a.ready().await.unwrap().call(1);
    let (_req, send) = handle.next_request().await.unwrap();
    let mut b_ready = task::spawn(b.ready());
    assert_pending!(b_ready.poll());
    send.send_error("inner failed");
    assert_eq!(fut.await.unwrap_err().to_string(), "inner failed");
    assert!(b_ready.is_woken());
    assert_ready_ok!(b_ready.poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_injected_fault_keeps_the_reservation_for_the_next_call() {
    let layer = ChaosLayer::builder().fault_rate(1.0).build().unwrap();
    let handle = layer.handle();
    let (mut a, mut mock_handle) = stack(&layer);
    let mut b = a.clone();
    assert!(a.ready().await.unwrap().call(1).await.is_err());
    // The inner service was not called: `a` still holds its permit.
    let mut b_ready = task::spawn(b.ready());
    assert_pending!(b_ready.poll());
    handle.set_fault_rate(0.0).unwrap();
    let fut = a.ready().await.unwrap().call(2);
    let (req, send) = mock_handle.next_request().await.unwrap();
    assert_eq!(req, 2);
    send.send_response(20);
    assert_eq!(fut.await.unwrap(), 20);
    assert!(b_ready.is_woken());
    assert_ready_ok!(b_ready.poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_woken_in_order() {
    let (mut a, mut handle) = stack(&quiet());
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
