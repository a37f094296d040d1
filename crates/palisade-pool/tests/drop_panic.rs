#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! A request or response whose `Drop` panics never takes the pool's worker down (issue 15,
//! kind 3): the worker drops user values under `catch_unwind`, logs, and goes on.

use std::time::Duration;

use palisade_core::rejection::{find, Closed};
use palisade_core::BoxError;
use palisade_pool::{make_fn, Pool};
use tokio::task::yield_now;
use tower::{Service, ServiceExt};

/// A request that panics when dropped while armed; the member defuses the ones it serves.
struct Bomb {
    value: u32,
    /// Milliseconds the member takes to answer.
    hold: u64,
    armed: bool,
}

impl Bomb {
    fn armed(value: u32) -> Self {
        Self { value, hold: 0, armed: true }
    }

    fn safe(value: u32, hold: u64) -> Self {
        Self { value, hold, armed: false }
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        assert!(!self.armed || std::thread::panicking(), "request {} panicked on drop", self.value);
    }
}

fn pool() -> Pool<Bomb, u32> {
    Pool::builder()
        .min_size(1)
        .max_size(1)
        .build(make_fn(|| {
            std::future::ready(Ok::<_, BoxError>(tower::service_fn(|mut b: Bomb| {
                b.armed = false;
                let (value, hold) = (b.value, b.hold);
                async move {
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    Ok::<_, BoxError>(value)
                }
            })))
        }))
        .unwrap()
}

async fn settle() {
    for _ in 0..16 {
        yield_now().await;
    }
}

async fn works(pool: &Pool<Bomb, u32>) {
    for n in 1..4 {
        assert_eq!(pool.clone().oneshot(Bomb::safe(n, 0)).await.unwrap(), n);
    }
    assert!(!pool.handle().is_closed());
}

/// The given input: the response future is dropped before the worker runs; the worker pops
/// the message, sees the caller gone and drops the request, whose `Drop` panics. It used to
/// kill the worker (every later call got "`pool` is closed").
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_panicking_on_drop_when_its_caller_left_does_not_kill_the_worker() {
    let pool = pool();
    settle().await;
    let mut svc = pool.clone();
    let fut = svc.ready().await.unwrap().call(Bomb::armed(0));
    drop(fut);
    settle().await;
    works(&pool).await;
}

/// Own case: the request waits in the queue behind a busy member when its caller leaves;
/// the worker prunes it (`prune_cancelled`).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_queued_request_panicking_on_drop_when_pruned_does_not_kill_the_worker() {
    let pool = pool();
    settle().await;
    let busy = tokio::spawn(pool.clone().oneshot(Bomb::safe(7, 100)));
    settle().await;
    let mut svc = pool.clone();
    let fut = svc.ready().await.unwrap().call(Bomb::armed(0));
    settle().await;
    drop(fut);
    settle().await;
    assert_eq!(pool.snapshot().queued, 0, "the cancelled request was pruned");
    assert_eq!(busy.await.unwrap().unwrap(), 7);
    works(&pool).await;
}

/// Own case: a request still queued at shutdown is answered `Closed`, then dropped; its
/// panicking `Drop` does not stop the worker from finishing the shutdown.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_panicking_on_drop_at_shutdown_does_not_stop_the_shutdown() {
    let pool = pool();
    settle().await;
    let busy = tokio::spawn(pool.clone().oneshot(Bomb::safe(7, 10_000)));
    settle().await;
    let queued = tokio::spawn(pool.clone().oneshot(Bomb::armed(0)));
    settle().await;
    let report = pool.handle().shutdown(Duration::from_millis(50)).await;
    assert_eq!(report.abandoned, 1);
    let err = queued.await.unwrap().unwrap_err();
    assert!(find::<Closed>(&*err).is_some(), "{err}");
    drop(busy);
}
