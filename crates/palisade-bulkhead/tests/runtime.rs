//! Limits changed at run time through the handles (issue 13 item 5), load shedding when the
//! inner service is not ready, and user code that panics.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_bulkhead::adaptive::{Aimd, Fixed, LimitAlgorithm, Sample, Vegas};
use palisade_bulkhead::{AdaptiveLimitEvent, AdaptiveLimitLayer, BulkheadFullReason, BulkheadLayer};
use palisade_core::BoxError;
use palisade_core::WhenFull;
use proptest::prelude::*;
use tokio::sync::oneshot;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An inner service whose calls finish when their request's sender fires (or is dropped).
fn gated() -> impl Service<oneshot::Receiver<()>, Response = (), Error = Infallible, Future: Send> + Clone {
    tower::service_fn(|rx: oneshot::Receiver<()>| async move {
        let _ = rx.await;
        Ok::<_, Infallible>(())
    })
}

/// Starts a call on a clone of `svc`; the sender finishes it.
fn start<S>(svc: &S) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), BoxError>>)
where
    S: Service<oneshot::Receiver<()>, Response = (), Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let (tx, rx) = oneshot::channel();
    (tx, tokio::spawn(svc.clone().oneshot(rx)))
}

async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

// === bulkhead ===

/// Shrinking below the calls in flight lets them finish; nothing is admitted until fewer
/// than the new maximum are in flight.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_shrink_below_in_flight() {
    let layer =
        BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(4).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(gated());
    let running: Vec<_> = (0..4).map(|_| start(&svc)).collect();
    settle().await;
    assert_eq!(h.in_flight(), 4);

    h.set_max_concurrent(2).unwrap();
    assert_eq!(h.max_concurrent(), 2);
    assert_eq!(h.in_flight(), 4, "calls in flight keep their permits");
    assert_eq!(h.available(), 0);
    let (next_tx, next) = start(&svc);
    settle().await;
    assert_eq!(h.queued(), 1);

    let mut running = running.into_iter();
    for expect_in_flight in [3, 2] {
        let (tx, call) = running.next().unwrap();
        tx.send(()).unwrap();
        call.await.unwrap().unwrap();
        settle().await;
        assert_eq!(h.in_flight(), expect_in_flight);
        assert_eq!(h.queued(), 1, "not admitted while {expect_in_flight} ≥ 2 are in flight");
    }
    let (tx, call) = running.next().unwrap();
    tx.send(()).unwrap();
    call.await.unwrap().unwrap();
    settle().await;
    assert_eq!(h.queued(), 0, "admitted once fewer than 2 are in flight");
    assert_eq!(h.in_flight(), 2);

    let (tx, call) = running.next().unwrap();
    tx.send(()).unwrap();
    call.await.unwrap().unwrap();
    next_tx.send(()).unwrap();
    next.await.unwrap().unwrap();
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.available(), 2, "the pool ends at exactly the new maximum");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_grow_admits_waiters_in_order() {
    let layer =
        BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(1).build().unwrap();
    let h = layer.handle();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o = order.clone();
    let svc = layer.layer(tower::service_fn(move |i: usize| {
        o.lock().unwrap().push(i);
        std::future::pending::<Result<(), Infallible>>()
    }));
    let calls: Vec<_> = (0..4).map(|i| tokio::spawn(svc.clone().oneshot(i))).collect();
    settle().await;
    assert_eq!(*order.lock().unwrap(), vec![0]);
    assert_eq!(h.queued(), 3);
    h.set_max_concurrent(3).unwrap();
    settle().await;
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(h.queued(), 1);
    assert_eq!(h.in_flight(), 3);
    for c in calls {
        c.abort();
    }
    settle().await;
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.available(), 3);
}

/// Growing while a shrink is still owed cancels the debt instead of adding permits.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_grow_after_shrink_keeps_the_count_exact() {
    let layer =
        BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(4).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(gated());
    let running: Vec<_> = (0..4).map(|_| start(&svc)).collect();
    settle().await;
    h.set_max_concurrent(1).unwrap();
    h.set_max_concurrent(3).unwrap();
    assert_eq!(h.in_flight(), 4);
    assert_eq!(h.available(), 0);
    for (tx, call) in running {
        tx.send(()).unwrap();
        call.await.unwrap().unwrap();
    }
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.available(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_max_wait_and_queue_change_for_new_callers() {
    let layer =
        BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(1).build().unwrap();
    let h = layer.handle();
    assert_eq!(h.when_full(), WhenFull::wait(Duration::MAX));
    assert_eq!(h.max_queue(), None);
    let svc = layer.layer(gated());
    let (tx, first) = start(&svc);
    settle().await;

    h.set_when_full(WhenFull::wait(ms(10)));
    assert_eq!(h.when_full(), WhenFull::wait(ms(10)));
    let t0 = tokio::time::Instant::now();
    let err = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::WaitTimedOut));
    assert_eq!(t0.elapsed(), ms(10));

    h.set_when_full(WhenFull::Refuse);
    let err = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));

    h.set_when_full(WhenFull::wait(Duration::MAX));
    h.set_max_queue(Some(0));
    assert_eq!(h.max_queue(), Some(0));
    let err = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::QueueFull));

    // A huge wait is "effectively never", not a clock overflow.
    h.set_max_queue(None);
    h.set_when_full(WhenFull::wait(Duration::MAX));
    let (tx2, second) = start(&svc);
    settle().await;
    assert_eq!(h.queued(), 1);
    tx.send(()).unwrap();
    first.await.unwrap().unwrap();
    tx2.send(()).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(h.in_flight(), 0);
}

#[test]
fn bulkhead_invalid_changes_are_refused_and_change_nothing() {
    let h = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(3)
        .build()
        .unwrap()
        .handle();
    assert_eq!(h.set_max_concurrent(usize::MAX).unwrap_err().field(), "max_concurrent");
    assert_eq!(
        h.set_max_concurrent(tokio::sync::Semaphore::MAX_PERMITS + 1).unwrap_err().field(),
        "max_concurrent"
    );
    assert_eq!(h.max_concurrent(), 3);
    assert_eq!(h.available(), 3);
    h.set_max_concurrent(tokio::sync::Semaphore::MAX_PERMITS).unwrap();
    assert_eq!(h.available(), tokio::sync::Semaphore::MAX_PERMITS);
    h.set_max_concurrent(1).unwrap();
    assert_eq!(h.available(), 1);
}

/// tower's `LoadShed` over the inner service: a permit is not held while the inner service
/// is not ready, and the call is refused without reaching it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_sheds_when_the_inner_service_is_not_ready() {
    let layer = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(2)
        .shed_when_inner_not_ready()
        .build()
        .unwrap();
    let h = layer.handle();
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(layer);
    handle.allow(0);
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(h.in_flight(), 0, "the permit went back");
    let err = svc.call(()).await.unwrap_err();
    assert!(support::is_overloaded(&err), "{err}");
    assert_eq!(h.shed_inner_not_ready(), 1);

    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(h.in_flight(), 1);
    let fut = svc.call(());
    let ((), send) = handle.next_request().await.unwrap();
    send.send_response(());
    fut.await.unwrap();
    assert_eq!(h.in_flight(), 0);
}

/// Without shedding, a caller holding a permit waits for the inner service, as tower's
/// `ConcurrencyLimit`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_without_shedding_waits_for_the_inner_service() {
    let layer =
        BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(2).build().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(layer);
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_panicking_listener_breaks_nothing() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::wait(ms(5)))
        .on_event(|_| panic!("listener"))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(gated());
    let (tx, first) = start(&svc);
    settle().await;
    assert_eq!(h.in_flight(), 1);
    let err = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::WaitTimedOut));
    tx.send(()).unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(h.in_flight(), 0);
    let (tx, again) = start(&svc);
    tx.send(()).unwrap();
    again.await.unwrap().unwrap();
}

// A model of the pool under resizes: a shedding bulkhead admits exactly while fewer than
// the current maximum are held, whatever sequence of acquisitions, releases and resizes.
#[derive(Clone, Debug)]
enum Op {
    Acquire,
    Release(usize),
    Resize(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Acquire), (0..8usize).prop_map(Op::Release), (1..8usize).prop_map(Op::Resize),]
}

proptest! {
    #[test]
    fn bulkhead_resizes_match_a_model(initial in 1..8usize, ops in proptest::collection::vec(op(), 1..60)) {
        let layer = BulkheadLayer::builder().max_concurrent(initial).when_full(WhenFull::Refuse).build().unwrap();
        let h = layer.handle();
        let svc = layer.layer(tower::service_fn(|()| std::future::pending::<Result<(), Infallible>>()));
        let mut held = Vec::new();
        let mut limit = initial;
        for op in ops {
            match op {
                Op::Acquire => {
                    let mut s = svc.clone();
                    let mut ready = task::spawn(s.ready());
                    assert_ready!(ready.poll()).unwrap();
                    drop(ready);
                    let mut fut = task::spawn(s.call(()));
                    let admitted = fut.poll().is_pending();
                    prop_assert_eq!(admitted, held.len() < limit);
                    if admitted {
                        held.push(fut);
                    }
                }
                Op::Release(i) => {
                    if !held.is_empty() {
                        drop(held.remove(i % held.len()));
                    }
                }
                Op::Resize(n) => {
                    h.set_max_concurrent(n).unwrap();
                    limit = n;
                }
            }
            prop_assert_eq!(h.in_flight(), held.len());
            prop_assert_eq!(h.available(), limit.saturating_sub(held.len()));
        }
        drop(held);
        prop_assert_eq!(h.available(), limit);
    }
}

// === adaptive limit ===

/// An adaptive limit lowered below the calls in flight admits nothing until they are
/// fewer than it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn adaptive_set_limit_below_in_flight() {
    let layer = AdaptiveLimitLayer::builder().algorithm(Fixed::new(4)).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(gated());
    let running: Vec<_> = (0..4).map(|_| start(&svc)).collect();
    settle().await;
    assert_eq!(h.in_flight(), 4);
    h.set_limit(2).unwrap();
    assert_eq!(h.limit(), 2);
    assert_eq!(h.in_flight(), 4);
    let mut running = running.into_iter();
    for _ in 0..2 {
        let err = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
        assert!(support::is_overloaded(&err));
        let (tx, call) = running.next().unwrap();
        tx.send(()).unwrap();
        call.await.unwrap().unwrap();
    }
    assert_eq!(h.in_flight(), 2);
    assert!(support::is_overloaded(&svc.clone().oneshot(oneshot::channel().1).await.unwrap_err()));
    let (tx, call) = running.next().unwrap();
    tx.send(()).unwrap();
    call.await.unwrap().unwrap();
    let (tx, admitted) = start(&svc);
    settle().await;
    assert_eq!(h.in_flight(), 2);
    tx.send(()).unwrap();
    admitted.await.unwrap().unwrap();
    drop(running);
    settle().await;
    assert_eq!(h.in_flight(), 0);
}

#[test]
fn adaptive_bounds_change_and_are_checked() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(50).min_limit(10).max_limit(100))
        .build()
        .unwrap();
    let h = layer.handle();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let e = events.clone();
    h.on_event(move |ev| e.lock().unwrap().push(ev.clone()));
    assert_eq!(h.bounds(), Some((10, 100)));
    h.set_bounds(1, 20).unwrap();
    assert_eq!(h.bounds(), Some((1, 20)));
    assert_eq!(h.limit(), 20);
    assert_eq!(*events.lock().unwrap(), vec![AdaptiveLimitEvent::LimitChanged { from: 50, to: 20 }]);
    assert_eq!(h.set_bounds(5, 2).unwrap_err().field(), "min_limit");
    assert_eq!(h.set_bounds(0, 0).unwrap_err().field(), "max_limit");
    assert_eq!(h.set_limit(21).unwrap_err().field(), "limit");
    assert_eq!(h.set_limit(0).unwrap_err().field(), "limit");
    assert_eq!(h.limit(), 20);
    h.set_limit(3).unwrap();
    assert_eq!(h.limit(), 3);
    h.set_bounds(1, usize::MAX).unwrap();
    h.set_limit(usize::MAX).unwrap();
    assert_eq!(h.limit(), usize::MAX);

    let fixed = AdaptiveLimitLayer::builder().algorithm(Fixed::new(5)).build().unwrap().handle();
    assert!(fixed.set_bounds(1, 10).is_err());
    assert_eq!(fixed.limit(), 5);
}

/// The algorithm moves on from a limit set through the handle.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn adaptive_algorithm_continues_from_a_set_limit() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(5).min_limit(1))
        .build()
        .unwrap();
    let h = layer.handle();
    h.set_limit(40).unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(layer);
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(());
    let ((), send) = handle.next_request().await.unwrap();
    send.send_error("overloaded");
    fut.await.unwrap_err();
    assert_eq!(h.limit(), 36); // 40 × 0.9
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn adaptive_sheds_when_the_inner_service_is_not_ready() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(20))
        .shed_when_inner_not_ready()
        .build()
        .unwrap();
    let h = layer.handle();
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(layer);
    handle.allow(0);
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert!(support::is_overloaded(&err));
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.snapshot().rejected, 1);
    assert_eq!(h.limit(), 20, "a shed call is no sample");

    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(());
    let ((), send) = handle.next_request().await.unwrap();
    send.send_response(());
    fut.await.unwrap();
}

#[derive(Debug)]
struct Panicking(usize);

impl LimitAlgorithm for Panicking {
    fn limit(&self) -> usize {
        self.0
    }

    fn update(&mut self, _: &Sample) -> usize {
        panic!("algorithm bug")
    }
}

/// A panicking algorithm or listener leaves the limit where it was; capacity still goes
/// back and the caller gets its response.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn adaptive_panicking_user_code_breaks_nothing() {
    let layer = AdaptiveLimitLayer::builder().algorithm(Panicking(2)).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(tower::service_fn(|()| async { Ok::<_, Infallible>(()) }));
    for _ in 0..5 {
        svc.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(h.limit(), 2);
    assert_eq!(h.in_flight(), 0);

    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(20).min_limit(1))
        .on_event(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            panic!("listener bug")
        })
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(tower::service_fn(|fail: bool| async move {
        if fail {
            Err::<(), BoxError>("boom".into())
        } else {
            Ok(())
        }
    }));
    svc.clone().oneshot(false).await.unwrap();
    svc.clone().oneshot(true).await.unwrap_err(); // a drop: LimitChanged to a panicking listener
    assert_eq!(h.limit(), 18, "the limit moved although its listener panicked");
    assert_eq!(h.in_flight(), 0);
    assert!(calls.load(Ordering::SeqCst) >= 3, "acquired, acquired, limit changed");

    // Vegas' user functions: a NaN leaves the limit alone, a panic is contained.
    let mut v = Vegas::default().decrease_fn(|_| f64::NAN).initial_limit(10).max_limit(20);
    v.update(&Sample::new(ms(10), 10, false));
    assert_eq!(v.update(&Sample::new(ms(10), 10, true)), 10);
    let alpha_calls = Arc::new(AtomicUsize::new(0));
    let a = alpha_calls.clone();
    let vegas = Vegas::default()
        .alpha_fn(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
            panic!("alpha bug")
        })
        .initial_limit(2)
        .max_limit(8);
    let layer = AdaptiveLimitLayer::builder().algorithm(vegas).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(tower::service_fn(|()| async {
        tokio::time::sleep(ms(10)).await;
        Ok::<_, Infallible>(())
    }));
    for _ in 0..3 {
        svc.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(alpha_calls.load(Ordering::SeqCst), 2, "the first sample only sets the no-load RTT");
    assert_eq!(h.limit(), 2);
    assert_eq!(h.in_flight(), 0);
}

/// A backlog wait of `Duration::MAX` saturates (issue 15 kind 1): the waiter waits and is
/// served when capacity frees.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn adaptive_backlog_wait_of_duration_max() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Fixed::new(1))
        .when_full(WhenFull::wait(Duration::MAX))
        .max_queue(usize::MAX)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(gated());
    let (tx, first) = start(&svc);
    let (tx2, second) = start(&svc);
    settle().await;
    assert_eq!(h.backlog(), 1);
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    assert_eq!(h.backlog(), 1);
    tx.send(()).unwrap();
    first.await.unwrap().unwrap();
    tx2.send(()).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(h.in_flight(), 0);
}

#[test]
fn keyed_bulkhead_refuses_shedding_on_inner_readiness() {
    let err = BulkheadLayer::builder()
        .shed_when_inner_not_ready()
        .keyed(|r: &u32| Some(*r))
        .max_keys(10)
        .build()
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.field(), "shed_when_inner_not_ready");
}

/// Resizes racing with acquisitions and releases on several threads: whenever a shrink
/// has drained, no more calls than the new maximum run inside, and the pool ends with
/// exactly the last maximum. (Waits are bounded spins on observed state, not timers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkhead_resizes_under_contention_keep_the_bound() {
    use std::sync::atomic::AtomicBool;

    async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..2_000_000 {
            if cond() {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    let layer =
        BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(3).build().unwrap();
    let h = layer.handle();
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (i, p, d) = (inside.clone(), peak.clone(), done.clone());
    let svc = layer.layer(tower::service_fn(move |()| {
        let (i, p, d) = (i.clone(), p.clone(), d.clone());
        async move {
            let now = i.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            i.fetch_sub(1, Ordering::SeqCst);
            d.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(())
        }
    }));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (svc, stop) = (svc.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    svc.clone().oneshot(()).await.unwrap();
                }
            })
        })
        .collect();
    let mut checked = 0;
    for round in 0..30 {
        let small = 1 + round % 3;
        h.set_max_concurrent(6).unwrap();
        // Shrink while most permits are held, so the shrink is owed by calls in flight.
        if !wait_until(|| h.in_flight() >= 5).await {
            continue;
        }
        h.set_max_concurrent(small).unwrap();
        if !wait_until(|| h.in_flight() <= small && inside.load(Ordering::SeqCst) <= small).await {
            continue;
        }
        peak.store(inside.load(Ordering::SeqCst), Ordering::SeqCst);
        let before = done.load(Ordering::SeqCst);
        if !wait_until(|| done.load(Ordering::SeqCst) >= before + 20).await {
            continue;
        }
        checked += 1;
        let seen = peak.load(Ordering::SeqCst);
        assert!(seen <= small, "round {round}: {seen} calls inside with a maximum of {small}");
    }
    assert!(checked >= 10, "only {checked} rounds ran to the check");
    h.set_max_concurrent(3).unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.available(), 3);
}

#[derive(Clone, Debug)]
enum AdaptiveOp {
    Acquire(usize),
    Release(usize),
    SetLimit(usize),
}

fn adaptive_op() -> impl Strategy<Value = AdaptiveOp> {
    prop_oneof![
        3 => (0..3usize).prop_map(AdaptiveOp::Acquire),
        2 => (0..16usize).prop_map(AdaptiveOp::Release),
        1 => (1..12usize).prop_map(AdaptiveOp::SetLimit),
    ]
}

proptest! {
    /// concurrency-limits' partitioned admission under limits set at run time, against a
    /// model: a call passes while the total is under the limit, or while its partition is
    /// under `max(1, ceil(limit × ratio))`; a call in no partition only under the limit.
    #[test]
    fn adaptive_partitions_under_set_limit_match_a_model(
        initial in 1..12usize,
        ops in proptest::collection::vec(adaptive_op(), 1..80),
    ) {
        const NAMES: [&str; 3] = ["a", "b", "other"];
        const RATIOS: [f64; 2] = [0.3, 0.5];
        let layer = AdaptiveLimitLayer::builder()
            .algorithm(Fixed::new(initial))
            .partition("a", RATIOS[0])
            .partition("b", RATIOS[1])
            .partition_by(|p: &usize| NAMES[*p])
            .build()
            .unwrap();
        let h = layer.handle();
        let mut svc = layer.layer(tower::service_fn(|_: usize| std::future::pending::<Result<(), Infallible>>()));
        let mut held: Vec<(usize, task::Spawn<_>)> = Vec::new();
        let mut limit = initial;
        for op in ops {
            match op {
                AdaptiveOp::Acquire(p) => {
                    let share = |i: usize| ((limit as f64 * RATIOS[i]).ceil() as usize).max(1);
                    let in_part = held.iter().filter(|(q, _)| *q == p).count();
                    let expect = held.len() < limit || (p < 2 && in_part < share(p));
                    let mut ready = task::spawn(svc.ready());
                    assert_ready!(ready.poll()).unwrap();
                    drop(ready);
                    let mut fut = task::spawn(svc.call(p));
                    let admitted = fut.poll().is_pending();
                    prop_assert_eq!(admitted, expect, "partition {} with {} held, limit {}", p, held.len(), limit);
                    if admitted {
                        held.push((p, fut));
                    }
                }
                AdaptiveOp::Release(i) => {
                    if !held.is_empty() {
                        drop(held.remove(i % held.len()));
                    }
                }
                AdaptiveOp::SetLimit(n) => {
                    h.set_limit(n).unwrap();
                    limit = n;
                }
            }
            prop_assert_eq!(h.in_flight(), held.len());
            prop_assert_eq!(h.limit(), limit);
        }
        drop(held);
        prop_assert_eq!(h.in_flight(), 0);
    }
}

/// Resilience4j's `changeConfig` accepts `maxConcurrentCalls` 0 (a bulkhead that admits
/// nothing); so does the handle. Shrinking to 0 with calls in flight lets them finish, admits
/// nobody (waiters time out with `WaitTimedOut`, `max_wait` zero refuses at once), and raising
/// it again admits the waiters in order with the count exact.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bulkhead_shrink_to_zero_drains_and_grows_back() {
    use palisade_core::rejection::BulkheadFull;
    let layer =
        BulkheadLayer::builder().max_concurrent(2).when_full(WhenFull::wait(ms(100))).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(gated());
    let running: Vec<_> = (0..2).map(|_| start(&svc)).collect();
    settle().await;
    h.set_max_concurrent(0).unwrap();
    assert_eq!((h.max_concurrent(), h.in_flight(), h.available()), (0, 2, 0));
    for (tx, call) in running {
        tx.send(()).unwrap();
        call.await.unwrap().unwrap();
    }
    assert_eq!((h.in_flight(), h.available()), (0, 0), "the freed permits paid the debt");
    // Nobody gets in: a waiter times out.
    let (_tx, refused) = start(&svc);
    tokio::time::advance(ms(101)).await;
    let err = refused.await.unwrap().unwrap_err();
    assert_eq!(err.downcast_ref::<BulkheadFull>().unwrap().reason(), BulkheadFullReason::WaitTimedOut);
    // With no waiting, refused at once.
    h.set_when_full(WhenFull::Refuse);
    let (_tx, refused) = start(&svc);
    let err = refused.await.unwrap().unwrap_err();
    assert_eq!(err.downcast_ref::<BulkheadFull>().unwrap().reason(), BulkheadFullReason::NoPermit);
    // Waiters queued while closed are admitted in order when it opens again.
    h.set_when_full(WhenFull::wait(Duration::MAX));
    let waiting: Vec<_> = (0..3).map(|_| start(&svc)).collect();
    settle().await;
    assert_eq!(h.queued(), 3);
    h.set_max_concurrent(2).unwrap();
    settle().await;
    assert_eq!((h.in_flight(), h.queued()), (2, 1));
    for (tx, call) in waiting {
        tx.send(()).unwrap();
        call.await.unwrap().unwrap();
    }
    assert_eq!((h.in_flight(), h.available(), h.max_concurrent()), (0, 2, 2));
}
