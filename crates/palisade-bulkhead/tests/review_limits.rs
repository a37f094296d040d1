//! Review: more cases of issue 13's kinds for the bulkheads — a keyed bulkhead under key
//! churn at `max_keys` while its limit changes at run time (a model-checked proptest), and
//! adaptive limits changed while callers wait in the backlog.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_bulkhead::adaptive::Fixed;
use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
use palisade_core::rejection::KeySetFull;
use palisade_core::BoxError;
use palisade_core::WhenFull;
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

const KEYS: u8 = 4;
const MAX_KEYS: usize = 2;

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Start(u8),
    Finish(usize),
    Resize(usize),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS).prop_map(Op::Start),
        3 => any::<usize>().prop_map(Op::Finish),
        1 => (0..4usize).prop_map(Op::Resize),
        1 => Just(Op::Sweep),
    ]
}

/// Per key: calls running in the inner service; and every admission that found the key at
/// or above the limit in force then.
#[derive(Default)]
struct Seen {
    running: HashMap<u8, usize>,
    violations: Vec<String>,
}

/// Key churn at `max_keys` (2 of 4 keys), calls that wait, limits raised and lowered (to 0
/// too) and sweeps, in any order: no key ever runs a call while it already runs `limit`
/// (the limit at that moment), at most `max_keys` keys are held, a new key is refused only
/// when every held key has calls in flight or waiting, and once everything finished no
/// permit is lost and no key is busy.
///
/// Run it without features too (`cargo test -p palisade-bulkhead --test review_limits`):
/// with `metrics` every permit also holds its compartment, so the map keeps a key in flight
/// whatever `can_forget` says; without, only `can_forget`'s in-flight check does (the
/// regression file holds a case that fails when that check is dropped).
fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async move {
        let layer = BulkheadLayer::builder()
            .when_full(WhenFull::wait(Duration::MAX))
            .max_concurrent(1)
            .keyed(|r: &(u8, oneshot::Receiver<()>)| Some(r.0))
            .max_keys(MAX_KEYS)
            .build()
            .unwrap();
        let h = layer.handle();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s, limit_h) = (seen.clone(), h.clone());
        let inner = tower::service_fn(move |(k, rx): (u8, oneshot::Receiver<()>)| {
            let s = s.clone();
            {
                let mut s = s.lock().unwrap();
                let before = *s.running.get(&k).unwrap_or(&0);
                let limit = limit_h.max_concurrent();
                if before >= limit {
                    s.violations.push(format!("key {k} admitted with {before} running, limit {limit}"));
                }
                *s.running.entry(k).or_default() += 1;
            }
            async move {
                let _ = rx.await;
                *s.lock().unwrap().running.get_mut(&k).unwrap() -= 1;
                Ok::<_, Infallible>(())
            }
        });
        let svc = layer.layer(inner);
        let mut calls: Vec<(oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), BoxError>>)> = Vec::new();
        for op in ops {
            // Past the map's scan interval: a full map looks for forgettable keys every time.
            tokio::time::advance(Duration::from_millis(100)).await;
            match op {
                Op::Start(k) => {
                    let (tx, rx) = oneshot::channel();
                    let call = tokio::spawn(svc.clone().oneshot((k, rx)));
                    settle().await;
                    if call.is_finished() {
                        let err = call.await.unwrap().unwrap_err();
                        prop_assert!(err.is::<KeySetFull>(), "{err}");
                        let busy = (0..KEYS).filter(|k| h.in_flight(k) + h.queued(k) > 0).count();
                        prop_assert_eq!(busy, MAX_KEYS, "a new key was refused while a held key was idle");
                    } else {
                        calls.push((tx, call));
                    }
                }
                Op::Finish(i) if !calls.is_empty() => {
                    let (tx, call) = calls.swap_remove(i % calls.len());
                    let _ = tx.send(());
                    settle().await;
                    if call.is_finished() {
                        call.await.unwrap().unwrap();
                    } else {
                        // Still waiting for a permit: it will run at once when it gets one.
                        calls.push((oneshot::channel().0, call));
                    }
                }
                Op::Finish(_) => {}
                Op::Resize(n) => {
                    h.set_max_concurrent(n).unwrap();
                    settle().await;
                }
                Op::Sweep => {
                    h.sweep();
                }
            }
            prop_assert!(h.keys() <= MAX_KEYS);
            let violations = std::mem::take(&mut seen.lock().unwrap().violations);
            prop_assert!(violations.is_empty(), "{violations:?}");
        }
        // Let everything finish.
        h.set_max_concurrent(4).unwrap();
        settle().await;
        for (tx, call) in calls {
            let _ = tx.send(());
            drop(call);
        }
        settle().await;
        for _ in 0..10 {
            settle().await;
        }
        let snap = h.snapshot();
        prop_assert_eq!((snap.total.in_flight, snap.total.queued), (0, 0));
        h.sweep();
        prop_assert_eq!(h.keys(), 0, "every key is like new once idle");
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn keyed_churn_with_run_time_limits_holds(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

/// A keyed limit lowered while one key has calls in flight and waiting: the calls in flight
/// keep their permits, the waiters run only once the key is below the new limit, and a
/// raise hands the new permits to the waiters in their order.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_keyed_shrink_with_waiters_keeps_permits_and_order() {
    let layer = BulkheadLayer::builder()
        .when_full(WhenFull::wait(Duration::MAX))
        .max_concurrent(3)
        .keyed(|r: &(&'static str, u32)| Some(r.0))
        .max_keys(4)
        .build()
        .unwrap();
    let h = layer.handle();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let svc = layer.layer(tower::service_fn(move |(_, n): (&'static str, u32)| {
        o.lock().unwrap().push(n);
        let g = g.clone();
        async move {
            g.notified().await;
            Ok::<_, Infallible>(n)
        }
    }));
    let calls: Vec<_> = (0..6).map(|n| tokio::spawn(svc.clone().oneshot(("a", n)))).collect();
    settle().await;
    assert_eq!((h.in_flight(&"a"), h.queued(&"a")), (3, 3));
    h.set_max_concurrent(1).unwrap();
    assert_eq!(h.in_flight(&"a"), 3, "calls in flight keep their permits");
    gate.notify_one();
    settle().await;
    gate.notify_one();
    settle().await;
    assert_eq!((h.in_flight(&"a"), h.queued(&"a")), (1, 3), "nobody admitted while ≥ 1 runs");
    gate.notify_one();
    settle().await;
    assert_eq!((h.in_flight(&"a"), h.queued(&"a")), (1, 2), "the first waiter once below");
    h.set_max_concurrent(3).unwrap();
    settle().await;
    assert_eq!((h.in_flight(&"a"), h.queued(&"a")), (3, 0));
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5], "waiters in their order");
    for _ in 0..3 {
        gate.notify_one();
        settle().await;
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(h.snapshot().total.in_flight, 0);
}

/// An adaptive limit set below the calls in flight while callers wait in the backlog: no
/// waiter is admitted until fewer than the new limit run; raising it admits them at once
/// (newest first, as concurrency-limits' LIFO limiter).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_adaptive_limit_lowered_with_a_backlog() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Fixed::new(3))
        .when_full(WhenFull::wait(Duration::from_secs(60)))
        .max_queue(10)
        .build()
        .unwrap();
    let h = layer.handle();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let svc = layer.layer(tower::service_fn(move |n: u32| {
        o.lock().unwrap().push(n);
        let g = g.clone();
        async move {
            g.notified().await;
            Ok::<_, Infallible>(n)
        }
    }));
    let mut calls = Vec::new();
    for n in 0..5 {
        calls.push(tokio::spawn(svc.clone().oneshot(n)));
        settle().await;
    }
    assert_eq!((h.in_flight(), h.backlog()), (3, 2));
    h.set_limit(1).unwrap();
    gate.notify_one();
    settle().await;
    gate.notify_one();
    settle().await;
    assert_eq!((h.in_flight(), h.backlog()), (1, 2), "none admitted while ≥ 1 runs");
    h.set_limit(3).unwrap();
    settle().await;
    assert_eq!((h.in_flight(), h.backlog()), (3, 0));
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 4, 3], "newest first");
    for _ in 0..3 {
        gate.notify_one();
        settle().await;
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(h.in_flight(), 0);
}
