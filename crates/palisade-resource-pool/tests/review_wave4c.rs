#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4c: the pool's live-handle count — what happens to the resources when the
//! last [`ResourcePool`] handle goes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_resource_pool::{Lifecycle, ResourcePool};

/// Numbered resources; `destroyed` records every destroy hook run.
#[derive(Clone, Default)]
struct Hooks {
    next: Arc<AtomicUsize>,
    destroyed: Arc<Mutex<Vec<usize>>>,
    marker: Arc<()>,
}

impl Lifecycle for Hooks {
    type Resource = usize;
    type Error = BoxError;

    async fn create(&self) -> Result<usize, BoxError> {
        Ok(self.next.fetch_add(1, Ordering::SeqCst))
    }

    async fn destroy(&self, r: usize) {
        // A teardown that takes a while (a connection's goodbye).
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.destroyed.lock().unwrap().push(r);
    }
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn destroyed(hooks: &Hooks) -> Vec<usize> {
    let mut d = hooks.destroyed.lock().unwrap().clone();
    d.sort_unstable();
    d
}

/// The crate's promise: every resource goes through `destroy` exactly once. A pool whose
/// last handle is dropped (without `close`) with two resources idle and one lent: nobody
/// can borrow again, so the idle ones go through the hook at once (on spawned tasks) and
/// the lent one when its guard gives it back; then the pool's state is freed. Before, the
/// idle resources (and the one given back later) were dropped with the pool's state
/// without their `destroy` hook: connections never said goodbye.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_last_handle_destroys_every_resource_through_the_hook() {
    let hooks = Hooks::default();
    let state = Arc::downgrade(&hooks.marker);
    let pool = ResourcePool::builder(hooks.clone()).max_size(3).build().unwrap();
    let [a, b, c] =
        [pool.acquire().await.unwrap(), pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    drop(a);
    drop(b);
    let other = pool.clone();
    drop(pool);
    settle().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(destroyed(&hooks).is_empty(), "a handle is left: nothing is torn down");
    assert_eq!(other.snapshot().available, 2);
    drop(other);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(destroyed(&hooks), vec![0, 1], "the idle ones went through the hook");
    drop(c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(destroyed(&hooks), vec![0, 1, 2], "and the lent one when given back");
    drop(hooks);
    assert!(state.upgrade().is_none(), "the pool's state was freed");
}

/// The same with `idle_timeout` and `min_size` set (the reaper and the refill running):
/// both stop with the last handle, the idle resources go through the hook, and nothing
/// is created again for `min_size`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_last_handle_with_a_reaper_and_a_refill() {
    let hooks = Hooks::default();
    let state = Arc::downgrade(&hooks.marker);
    let pool = ResourcePool::builder(hooks.clone())
        .min_size(2)
        .max_size(3)
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    settle().await;
    assert_eq!(pool.snapshot().total, 2);
    drop(pool);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(destroyed(&hooks), vec![0, 1]);
    assert_eq!(hooks.next.load(Ordering::SeqCst), 2, "nothing created again");
    assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), 0);
    drop(hooks);
    assert!(state.upgrade().is_none());
}
