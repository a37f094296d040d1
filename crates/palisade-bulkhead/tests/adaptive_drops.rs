#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Randomly drops adaptive-limit futures at every stage (running, waiting in the backlog,
//! granted but not yet polled) and checks that capacity and backlog always come back.

use std::time::Duration;

use palisade_bulkhead::adaptive::Aimd;
use palisade_bulkhead::AdaptiveLimitLayer;
use palisade_core::WhenFull;
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::Layer;
use tower_test::mock::Spawn;

#[derive(Clone, Debug)]
enum Op {
    Call { batch: bool, fail: bool },
    PollFuture(usize),
    Complete(usize),
    DropFuture(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), any::<bool>()).prop_map(|(batch, fail)| Op::Call { batch, fail }),
        3 => (0..12usize).prop_map(Op::PollFuture),
        3 => (0..12usize).prop_map(Op::Complete),
        2 => (0..12usize).prop_map(Op::DropFuture),
        1 => (1..60u64).prop_map(Op::Advance),
    ]
}

type Req = (oneshot::Receiver<()>, bool, bool);
type Call = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), palisade_core::BoxError>>>>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn capacity_and_backlog_always_come_back(
        max in 1..5usize,
        backlog in prop::option::of(1..4usize),
        partitioned in any::<bool>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let builder = AdaptiveLimitLayer::builder().algorithm(Aimd::default().initial_limit(1).min_limit(1).max_limit(max));
            let builder = match backlog {
                Some(n) => builder.when_full(WhenFull::wait(Duration::from_millis(30))).max_queue(n),
                None => builder,
            };
            let inner = tower::service_fn(|(rx, _, fail): Req| async move {
                let _ = rx.await;
                if fail { Err("overloaded") } else { Ok(()) }
            });
            // Two shapes of the same test: with and without partitions.
            let (handle, mut svc): (_, Box<dyn FnMut(Req) -> Call>) = if partitioned {
                let layer = builder
                    .partition("live", 0.5)
                    .partition("batch", 0.5)
                    .partition_by(|r: &Req| if r.1 { "batch" } else { "live" })
                    .build()
                    .unwrap();
                let h = layer.handle();
                let mut s = Spawn::new(layer.layer(inner));
                (h, Box::new(move |r: Req| -> Call {
                    assert!(s.poll_ready().is_ready());
                    Box::pin(s.call(r))
                }))
            } else {
                let layer = builder.build().unwrap();
                let h = layer.handle();
                let mut s = Spawn::new(layer.layer(inner));
                (h, Box::new(move |r: Req| -> Call {
                    assert!(s.poll_ready().is_ready());
                    Box::pin(s.call(r))
                }))
            };
            let mut futures = Vec::new();
            for op in ops {
                match op {
                    Op::Call { batch, fail } => {
                        let (tx, rx) = oneshot::channel();
                        let mut f = tokio_test::task::spawn(svc((rx, batch, fail)));
                        if f.poll().is_pending() {
                            futures.push(Some((f, Some(tx))));
                        }
                    }
                    Op::PollFuture(j) => if let Some(slot) = futures.get_mut(j) {
                        if let Some((f, _)) = slot {
                            if f.poll().is_ready() { *slot = None; }
                        }
                    },
                    Op::Complete(j) => if let Some(slot) = futures.get_mut(j) {
                        if let Some((f, tx)) = slot {
                            if let Some(tx) = tx.take() { let _ = tx.send(()); }
                            if f.poll().is_ready() { *slot = None; }
                        }
                    },
                    Op::DropFuture(j) => if let Some(slot) = futures.get_mut(j) { *slot = None; },
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                }
                if let Some(n) = backlog { assert!(handle.backlog() <= n); } else { assert_eq!(handle.backlog(), 0); }
                let limit = handle.limit();
                assert!((1..=max).contains(&limit));
            }
            drop(futures);
            assert_eq!(handle.in_flight(), 0);
            assert_eq!(handle.backlog(), 0);
            // And the limit admits again.
            let (tx, rx) = oneshot::channel();
            drop(tx);
            let mut f = tokio_test::task::spawn(svc((rx, false, false)));
            assert!(f.poll().is_ready());
        });
    }
}
