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

/// Found by the model below: `min_size(1)`, `max_size(2)`, `idle_timeout(1 s)`, hooks
/// that take 1 ms. One resource idle, one lent. Past the idle
/// timeout, the reaper takes the idle one (two exist, one more than `min_size`) while the
/// caller destroys the lent one: both go, and the pool is left with none. The caller's
/// refill saw the reaper's resource still counted (its `destroy` was running) and made
/// nothing; the reaper refilled nothing after its `destroy`. Now the reaper refills to
/// `min_size` after destroying, so the pool is back to one resource, without traffic.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_expiry_racing_a_destroy_refills_to_min_size() {
    #[derive(Clone, Default)]
    struct Slow {
        next: Arc<AtomicUsize>,
    }
    impl Lifecycle for Slow {
        type Resource = usize;
        type Error = BoxError;
        async fn create(&self) -> Result<usize, BoxError> {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(self.next.fetch_add(1, Ordering::SeqCst))
        }
        async fn destroy(&self, _: usize) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let pool = ResourcePool::builder(Slow::default())
        .min_size(1)
        .max_size(2)
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let released = pool.acquire().await.unwrap();
    let lent = pool.acquire().await.unwrap();
    drop(released);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.in_use), (2, 1, 1), "one idle, one lent");
    tokio::time::advance(Duration::from_secs(1)).await;
    palisade_resource_pool::Pooled::destroy(lent).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = pool.snapshot();
    assert_eq!((s.total, s.available), (1, 1), "{s:?}: min_size is kept");
}

mod model {
    use super::*;
    use palisade_resource_pool::Pooled;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Resources that may turn out broken (their recycle check fails) and hooks that take
    /// a while; every destroy is recorded, a second destroy of one resource noted.
    #[derive(Clone, Default)]
    struct Slow {
        next: Arc<AtomicUsize>,
        create_ms: u64,
        destroy_ms: u64,
        broken: Arc<Mutex<HashSet<usize>>>,
        destroyed: Arc<Mutex<Vec<usize>>>,
        /// `create` fails (after its delay) while set.
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Lifecycle for Slow {
        type Resource = usize;
        type Error = BoxError;

        async fn create(&self) -> Result<usize, BoxError> {
            tokio::time::sleep(Duration::from_millis(self.create_ms)).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err("refused".into());
            }
            Ok(self.next.fetch_add(1, Ordering::SeqCst))
        }

        async fn recycle(&self, r: &mut usize) -> Result<(), BoxError> {
            if self.broken.lock().unwrap().contains(r) {
                return Err("broken".into());
            }
            Ok(())
        }

        async fn destroy(&self, r: usize) {
            tokio::time::sleep(Duration::from_millis(self.destroy_ms)).await;
            self.destroyed.lock().unwrap().push(r);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Acquire,
        Release(usize),
        Destroy(usize),
        Detach(usize),
        Break(usize),
        Advance(u64),
        CloneAndDrop,
        Close,
        FailCreates(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::Acquire),
            4 => any::<usize>().prop_map(Op::Release),
            1 => any::<usize>().prop_map(Op::Destroy),
            1 => any::<usize>().prop_map(Op::Detach),
            1 => any::<usize>().prop_map(Op::Break),
            4 => (0u64..3_000).prop_map(Op::Advance),
            1 => Just(Op::CloneAndDrop),
            1 => Just(Op::Close),
            1 => any::<bool>().prop_map(Op::FailCreates),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any sequence of borrows, returns, destroys, detaches, broken checks, time and
        /// close, with slow hooks, idle expiry and `min_size`; at the end every handle is
        /// dropped (the pool closes). Then every resource created went through `destroy`
        /// exactly once or was detached, the count of resources was right all along, and
        /// no task is left.
        #[test]
        fn every_resource_is_destroyed_once_or_detached(
            min_size in 0usize..3,
            extra in 1usize..4,
            idle in proptest::option::of(1u64..5),
            create_ms in 0u64..30,
            destroy_ms in 0u64..30,
            refuse in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async move {
                let hooks = Slow { create_ms, destroy_ms, ..Slow::default() };
                let mut builder = ResourcePool::builder(hooks.clone()).min_size(min_size).max_size(min_size + extra);
                if refuse {
                    builder = builder.when_full(palisade_core::when_full::WhenFull::Refuse);
                }
                if let Some(s) = idle {
                    builder = builder.idle_timeout(Duration::from_secs(s));
                }
                let pool = builder.build().unwrap();
                let mut held: Vec<Pooled<Slow>> = Vec::new();
                let mut detached = 0usize;
                for op in ops {
                    match op {
                        Op::Acquire => {
                            if let Ok(Ok(g)) = tokio::time::timeout(Duration::from_millis(100), pool.acquire()).await {
                                held.push(g);
                            }
                        }
                        Op::Release(i) if !held.is_empty() => drop(held.swap_remove(i % held.len())),
                        Op::Destroy(i) if !held.is_empty() => Pooled::destroy(held.swap_remove(i % held.len())).await,
                        Op::Detach(i) if !held.is_empty() => {
                            detached += usize::from(Pooled::detach(held.swap_remove(i % held.len())).is_some());
                        }
                        Op::Break(i) if !held.is_empty() => {
                            let r = *held[i % held.len()];
                            hooks.broken.lock().unwrap().insert(r);
                        }
                        Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                        Op::CloneAndDrop => drop(pool.clone()),
                        Op::Close => pool.close().await,
                        Op::FailCreates(on) => hooks.failing.store(on, Ordering::SeqCst),
                        _ => {}
                    }
                    settle().await;
                    let created = hooks.next.load(Ordering::SeqCst);
                    let destroyed = hooks.destroyed.lock().unwrap().len();
                    let s = pool.snapshot();
                    // Every resource created and not yet destroyed or detached is counted
                    // (one being destroyed still is; a create in progress is too).
                    prop_assert!(s.total >= created - destroyed - detached, "{s:?} created {created} destroyed {destroyed}");
                    prop_assert!(s.in_use >= held.len());
                }
                drop(held);
                // Idle expiry and the refill settle on `min_size` exactly (an open pool with
                // an idle timeout, after long enough without traffic), at least `min_size`
                // without one.
                let mut closed = pool.is_closed();
                if !closed {
                    // A failed refill waits for the next event: creates work again, and
                    // one borrow and return is that event.
                    hooks.failing.store(false, Ordering::SeqCst);
                    drop(pool.acquire().await.unwrap());
                    for _ in 0..4 {
                        tokio::time::advance(Duration::from_secs(10)).await;
                        settle().await;
                    }
                    let s = pool.snapshot();
                    match idle {
                        Some(_) => prop_assert_eq!(s.total, min_size, "{:?}", s),
                        None => prop_assert!(s.total >= min_size, "{:?}", s),
                    }
                    prop_assert_eq!(s.available, s.total);
                    closed = true;
                }
                prop_assert!(closed);
                drop(pool);
                for _ in 0..10 {
                    tokio::time::advance(Duration::from_secs(10)).await;
                    settle().await;
                }
                let created = hooks.next.load(Ordering::SeqCst);
                let mut destroyed = hooks.destroyed.lock().unwrap().clone();
                destroyed.sort_unstable();
                let unique: HashSet<_> = destroyed.iter().copied().collect();
                prop_assert_eq!(unique.len(), destroyed.len(), "a resource destroyed twice: {:?}", destroyed);
                prop_assert_eq!(destroyed.len() + detached, created, "destroyed {:?}", destroyed);
                prop_assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), 0);
                Ok(())
            })?;
        }
    }
}

/// Handles cloned and dropped on four worker threads while they borrow and return (some
/// resources thrown away, some detached): whichever thread drops the last handle, every
/// resource created ends up destroyed exactly once or detached, and the pool's state is
/// freed. Only counts are asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_handle_dropped_on_any_thread_destroys_everything_once() {
    /// `Hooks` without the teardown's sleep (no timers on this real-time runtime).
    #[derive(Clone, Default)]
    struct Quick {
        next: Arc<AtomicUsize>,
        destroyed: Arc<Mutex<Vec<usize>>>,
        marker: Arc<()>,
    }
    impl Lifecycle for Quick {
        type Resource = usize;
        type Error = BoxError;
        async fn create(&self) -> Result<usize, BoxError> {
            Ok(self.next.fetch_add(1, Ordering::SeqCst))
        }
        async fn destroy(&self, r: usize) {
            tokio::task::yield_now().await;
            self.destroyed.lock().unwrap().push(r);
        }
    }
    for round in 0..20 {
        let hooks = Quick::default();
        let state = Arc::downgrade(&hooks.marker);
        let pool = ResourcePool::builder(hooks.clone()).min_size(1).max_size(3).build().unwrap();
        let detached = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let pool = pool.clone();
                let detached = detached.clone();
                tokio::spawn(async move {
                    for i in 0..50usize {
                        let guard = pool.acquire().await.unwrap();
                        match (i + t) % 7 {
                            0 => palisade_resource_pool::Pooled::destroy(guard).await,
                            1 => {
                                palisade_resource_pool::Pooled::detach(guard);
                                detached.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => drop(guard),
                        }
                        if i % 5 == 0 {
                            drop(pool.clone());
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        drop(pool);
        for t in tasks {
            t.await.unwrap();
        }
        // The last handle went with the last task: the destroys run on spawned tasks.
        let created = || hooks.next.load(Ordering::SeqCst);
        for _ in 0..100_000 {
            if hooks.destroyed.lock().unwrap().len() + detached.load(Ordering::SeqCst) == created() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let mut destroyed = hooks.destroyed.lock().unwrap().clone();
        destroyed.sort_unstable();
        let unique: std::collections::HashSet<_> = destroyed.iter().collect();
        assert_eq!(unique.len(), destroyed.len(), "round {round}: destroyed twice: {destroyed:?}");
        assert_eq!(destroyed.len() + detached.load(Ordering::SeqCst), created(), "round {round}");
        drop(hooks);
        for _ in 0..100_000 {
            if state.upgrade().is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(state.upgrade().is_none(), "round {round}: the pool's state was freed");
    }
}
