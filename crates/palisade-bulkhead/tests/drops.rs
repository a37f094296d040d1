#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Randomly drops services and futures at every stage and checks that no permit or queue
//! slot is ever stranded, against a small model of who holds what.

use std::convert::Infallible;
use std::time::Duration;

use palisade_bulkhead::BulkheadLayer;
use palisade_core::WhenFull;
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::Layer;
use tower_test::mock::Spawn;

#[derive(Clone, Debug)]
enum Op {
    PollReady(usize),
    Call(usize),
    Clone(usize),
    DropService(usize),
    PollFuture(usize),
    Complete(usize),
    DropFuture(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8usize).prop_map(Op::PollReady),
        3 => (0..8usize).prop_map(Op::Call),
        2 => (0..8usize).prop_map(Op::Clone),
        1 => (0..8usize).prop_map(Op::DropService),
        2 => (0..8usize).prop_map(Op::PollFuture),
        2 => (0..8usize).prop_map(Op::Complete),
        1 => (0..8usize).prop_map(Op::DropFuture),
        1 => (1..80u64).prop_map(Op::Advance),
    ]
}

fn is_waiting<T: std::fmt::Debug>(t: &T) -> bool {
    format!("{t:?}").contains("state: \"waiting\"")
}

fn is_ready<T: std::fmt::Debug>(t: &T) -> bool {
    format!("{t:?}").contains("state: \"ready\"")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn permits_and_queue_slots_always_come_back(
        max in 1..4usize,
        queue in prop::option::of(0..4usize),
        wait in prop::option::of(0..60u64),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let mut b = BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(max);
            if let Some(q) = queue { b = b.max_queue(q); }
            if let Some(w) = wait { b = b.when_full(WhenFull::wait(Duration::from_millis(w))); }
            let layer = b.build().unwrap();
            let h = layer.handle();
            let inner = tower::service_fn(|rx: oneshot::Receiver<()>| async move {
                let _ = rx.await;
                Ok::<_, Infallible>(())
            });
            let mut services = vec![Some((Spawn::new(layer.layer(inner)), false))];
            let mut futures = Vec::new();

            for op in ops {
                match op {
                    Op::PollReady(i) => if let Some(Some((s, can_call))) = services.get_mut(i) {
                        if s.poll_ready().is_ready() { *can_call = true; }
                    },
                    Op::Call(i) => if let Some(Some((s, can_call))) = services.get_mut(i) {
                        if *can_call {
                            *can_call = false;
                            // Ready with a permit, or ready to answer a rejection.
                            let holding = is_ready(s.get_ref());
                            let (tx, rx) = oneshot::channel();
                            futures.push(Some((tokio_test::task::spawn(s.call(rx)), tx, holding)));
                        }
                    },
                    Op::Clone(i) => if let Some(Some((s, _))) = services.get(i) {
                        let c = s.get_ref().clone();
                        services.push(Some((Spawn::new(c), false)));
                    },
                    Op::DropService(i) => if let Some(slot) = services.get_mut(i) { *slot = None; },
                    Op::PollFuture(j) => if let Some(slot) = futures.get_mut(j) {
                        if let Some((f, _, _)) = slot {
                            if f.poll().is_ready() { *slot = None; }
                        }
                    },
                    Op::Complete(j) => if let Some(slot) = futures.get_mut(j) {
                        if let Some((mut f, tx, _)) = slot.take() {
                            let _ = tx.send(());
                            // A rejected future answers at once; a running one once its call ends.
                            assert!(f.poll().is_ready());
                        }
                    },
                    Op::DropFuture(j) => if let Some(slot) = futures.get_mut(j) { *slot = None; },
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                }
                // Model: permits are held by ready services and running futures, plus those
                // already handed to a waiting service that has not polled since.
                let held = services.iter().flatten().filter(|(s, _)| is_ready(s.get_ref())).count()
                    + futures.iter().flatten().filter(|(_, _, holding)| *holding).count();
                let waiting = services.iter().flatten().filter(|(s, _)| is_waiting(s.get_ref())).count();
                assert!(h.in_flight() >= held, "{} < {held}", h.in_flight());
                assert!(h.in_flight() <= held + waiting, "{} > {held} + {waiting}", h.in_flight());
                assert_eq!(h.queued(), waiting);
                assert!(h.in_flight() <= max);
                if let Some(q) = queue { assert!(h.queued() <= q); }
            }
            drop(services);
            drop(futures);
            assert_eq!(h.in_flight(), 0);
            assert_eq!(h.queued(), 0);
            assert_eq!(h.available(), max);
        });
    }
}
