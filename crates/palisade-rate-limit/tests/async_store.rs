//! The asynchronous store seam: admission in the response future, before the inner call.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::rejection::{find, CostExceedsCapacity, RateLimited};
use palisade_rate_limit::async_store::{Admission, AsyncKeyedStore, AsyncRateLimitLayer};
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt};

/// Admits `left` calls in total, each after `gate` is notified (when set); counts admissions
/// whose future was dropped before it answered.
struct Store {
    left: AtomicU32,
    gate: Option<Arc<Notify>>,
    dropped: Arc<AtomicUsize>,
}

struct DropFlag(Arc<AtomicUsize>, bool);
impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl AsyncKeyedStore<u32> for Store {
    fn admit(&self, key: &u32, cost: u32) -> Pin<Box<dyn Future<Output = Admission> + Send>> {
        if *key == 99 {
            return Box::pin(std::future::ready(Admission::CostExceedsCapacity { capacity: 0 }));
        }
        let ok = self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(cost)).is_ok();
        let gate = self.gate.clone();
        let flag = DropFlag(self.dropped.clone(), false);
        Box::pin(async move {
            let mut flag = flag; // move the whole guard in (not only the field assigned below)
            if let Some(g) = gate {
                g.notified().await;
            }
            flag.1 = true;
            if ok {
                Admission::Admitted
            } else {
                Admission::Limited(Duration::from_secs(3))
            }
        })
    }
}

fn store(left: u32, gate: Option<Arc<Notify>>) -> (Store, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    (Store { left: AtomicU32::new(left), gate, dropped: dropped.clone() }, dropped)
}

#[tokio::test]
async fn admitted_calls_reach_the_inner_service_and_refused_ones_do_not() {
    let (st, _) = store(2, None);
    let layer = AsyncRateLimitLayer::new("api", st, |r: &u32| Some(*r));
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    let mut svc = layer.layer(mock);
    handle.allow(10);
    for i in 0..2 {
        // admission runs in the response future: it must be polled to reach the inner service
        let fut = tokio::spawn(svc.ready().await.unwrap().call(i));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req, i);
        send.send_response(i + 10);
        assert_eq!(fut.await.unwrap().unwrap(), i + 10);
    }
    let err = svc.ready().await.unwrap().call(5).await.unwrap_err();
    let limited = find::<RateLimited>(&*err).expect("RateLimited");
    assert_eq!((limited.name(), limited.retry_after()), ("api", Duration::from_secs(3)));
    let err = svc.ready().await.unwrap().call(99).await.unwrap_err();
    assert!(find::<CostExceedsCapacity>(&*err).is_some());
    // the refused calls never reached the inner service
    assert!(tokio_test::task::spawn(handle.next_request()).poll().is_pending());
}

#[tokio::test]
async fn dropping_the_response_future_while_admission_waits_drops_the_admission() {
    let gate = Arc::new(Notify::new());
    let (st, dropped) = store(5, Some(gate.clone()));
    let layer = AsyncRateLimitLayer::new("api", st, |r: &u32| Some(*r));
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    let mut svc = layer.layer(mock);
    handle.allow(10);
    let mut fut = tokio_test::task::spawn(svc.ready().await.unwrap().call(1));
    assert!(fut.poll().is_pending());
    drop(fut);
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the store's admission future was dropped unanswered");
    // and the inner service was never called
    assert!(tokio_test::task::spawn(handle.next_request()).poll().is_pending());
    // the service is still usable: the next call waits for the gate, then goes through
    let fut = tokio::spawn(svc.ready().await.unwrap().call(2));
    tokio::task::yield_now().await;
    gate.notify_one();
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 2);
    send.send_response(7);
    assert_eq!(fut.await.unwrap().unwrap(), 7);
}
