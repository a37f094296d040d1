#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::rejection::{Closed, Overloaded, TimedOut};
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use palisade_resource_pool::{
    lifecycle_fn, DestroyReason, Lifecycle, Pooled, ResourcePool, ResourcePoolEvent,
};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, task};

/// Numbered connections; ids in `broken` fail their recycle check; `destroyed` records
/// teardowns.
#[derive(Clone, Default)]
struct Conns {
    next: Arc<AtomicUsize>,
    broken: Arc<Mutex<Vec<usize>>>,
    destroyed: Arc<Mutex<Vec<usize>>>,
    fail_create: Arc<AtomicUsize>,
}

impl Lifecycle for Conns {
    type Resource = usize;
    type Error = BoxError;

    async fn create(&self) -> Result<usize, BoxError> {
        if self.fail_create.load(Ordering::SeqCst) > 0 {
            self.fail_create.fetch_sub(1, Ordering::SeqCst);
            return Err("connection refused".into());
        }
        Ok(self.next.fetch_add(1, Ordering::SeqCst))
    }

    async fn recycle(&self, conn: &mut usize) -> Result<(), BoxError> {
        if self.broken.lock().unwrap().contains(conn) {
            Err("broken".into())
        } else {
            Ok(())
        }
    }

    async fn destroy(&self, conn: usize) {
        self.destroyed.lock().unwrap().push(conn);
    }
}

fn pool(max: usize) -> ResourcePool<Conns> {
    ResourcePool::builder(Conns::default()).max_size(max).build().unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn guard_returns_the_resource_on_drop() {
    let pool = pool(2);
    let a = pool.acquire().await.unwrap();
    assert_eq!(*a, 0);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.in_use), (1, 0, 1));
    drop(a);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.in_use), (1, 1, 0));
    assert_eq!(*pool.acquire().await.unwrap(), 0);
    assert_eq!(pool.snapshot().created, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acquire_times_out_when_everything_is_lent() {
    let pool = ResourcePool::builder(Conns::default())
        .name("db")
        .max_size(1)
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .build()
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let mut waiting = task::spawn(pool.acquire());
    assert_pending!(waiting.poll());
    assert_eq!(pool.snapshot().waiting, 1);
    advance(Duration::from_secs(1)).await;
    let err = assert_ready!(waiting.poll()).unwrap_err();
    let timed_out = err.downcast_ref::<TimedOut>().unwrap();
    assert_eq!((timed_out.name(), timed_out.after()), ("db", Duration::from_secs(1)));
    assert_eq!(pool.snapshot().waiting, 0);
    assert_eq!(pool.snapshot().timed_out, 1);
    drop(held);
    assert!(pool.acquire().await.is_ok());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn broken_resources_are_destroyed_on_recycle() {
    let conns = Conns::default();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pool = ResourcePool::builder(conns.clone())
        .max_size(2)
        .on_event(move |e: &ResourcePoolEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    drop(pool.acquire().await.unwrap());
    conns.broken.lock().unwrap().push(0);
    let c = pool.acquire().await.unwrap();
    assert_eq!(*c, 1);
    assert_eq!(*conns.destroyed.lock().unwrap(), vec![0]);
    let s = pool.snapshot();
    assert_eq!((s.total, s.created, s.destroyed), (1, 2, 1));
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ResourcePoolEvent::Destroyed { reason: DestroyReason::Broken, total: 0 })));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_get_resources_in_order() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    let mut w1 = task::spawn(pool.acquire());
    let mut w2 = task::spawn(pool.acquire());
    assert_pending!(w1.poll());
    assert_pending!(w2.poll());
    assert_eq!(pool.snapshot().waiting, 2);
    drop(held);
    assert!(w1.is_woken());
    assert!(!w2.is_woken());
    let got = assert_ready!(w1.poll()).unwrap();
    assert_pending!(w2.poll());
    drop(got);
    assert!(assert_ready!(w2.poll()).is_ok());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_waiting_acquire_frees_its_place() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    let mut w1 = task::spawn(pool.acquire());
    let mut w2 = task::spawn(pool.acquire());
    assert_pending!(w1.poll());
    assert_pending!(w2.poll());
    drop(w1);
    assert_eq!(pool.snapshot().waiting, 1);
    drop(held);
    assert!(assert_ready!(w2.poll()).is_ok());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn create_errors_reach_the_caller_and_free_the_place() {
    let conns = Conns::default();
    conns.fail_create.store(1, Ordering::SeqCst);
    let pool = ResourcePool::builder(conns).max_size(1).build().unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
    assert_eq!(pool.snapshot().total, 0);
    assert_eq!(pool.snapshot().in_use, 0);
    assert_eq!(*pool.acquire().await.unwrap(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn execute_borrows_and_returns() {
    let pool = pool(1);
    let out = pool
        .execute(async |conn: &mut usize| {
            *conn += 40;
            *conn + 2
        })
        .await
        .unwrap();
    assert_eq!(out, 42);
    assert_eq!(pool.snapshot().available, 1);
    assert_eq!(*pool.acquire().await.unwrap(), 40);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn destroy_and_detach_take_the_resource_out() {
    let conns = Conns::default();
    let pool = ResourcePool::builder(conns.clone()).max_size(2).build().unwrap();
    let a = pool.acquire().await.unwrap();
    Pooled::destroy(a).await;
    assert_eq!(*conns.destroyed.lock().unwrap(), vec![0]);
    let b = pool.acquire().await.unwrap();
    assert_eq!(Pooled::detach(b), Some(1));
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.in_use), (0, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_refuses_and_destroys() {
    let conns = Conns::default();
    let pool = ResourcePool::builder(conns.clone()).max_size(2).build().unwrap();
    let held = pool.acquire().await.unwrap();
    drop(pool.acquire().await.unwrap());
    let other = pool.clone();
    let held2 = pool.acquire().await.unwrap();
    let mut waiting = task::spawn(other.acquire());
    assert_pending!(waiting.poll());
    drop(held2);
    let got = assert_ready!(waiting.poll()).unwrap();
    let mut waiting = task::spawn(other.acquire());
    assert_pending!(waiting.poll());
    pool.close().await;
    assert!(assert_ready!(waiting.poll()).unwrap_err().is::<Closed>());
    assert!(pool.acquire().await.unwrap_err().is::<Closed>());
    drop(held);
    drop(got);
    // Given back after close: destroyed through the hook on spawned tasks.
    settle().await;
    assert_eq!(pool.snapshot().total, 0);
    assert_eq!(conns.destroyed.lock().unwrap().len(), 2);
    assert!(pool.is_closed());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_resources_expire_down_to_min() {
    let conns = Conns::default();
    let pool = ResourcePool::builder(conns.clone())
        .min_size(1)
        .max_size(3)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    pool.fill().await.unwrap();
    assert_eq!(pool.snapshot().total, 1);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    drop(a);
    drop(b);
    assert_eq!(pool.snapshot().available, 2);
    advance(Duration::from_secs(11)).await;
    let c = pool.acquire().await.unwrap();
    // The newest idle one expired and was destroyed; the last one is kept for `min_size`.
    assert_eq!(conns.destroyed.lock().unwrap().len(), 1);
    assert_eq!(pool.snapshot().total, 1);
    drop(c);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn closures_make_a_lifecycle() {
    let next = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let pool = ResourcePool::builder(
        lifecycle_fn(move || {
            let next = next.clone();
            async move { Ok::<_, std::io::Error>(next.fetch_add(1, Ordering::SeqCst)) }
        })
        .recycle_if(|c: &mut usize| *c != 0)
        .on_destroy(move |_c: usize| {
            let d = d.clone();
            async move {
                d.fetch_add(1, Ordering::SeqCst);
            }
        }),
    )
    .build()
    .unwrap();
    drop(pool.acquire().await.unwrap());
    assert_eq!(*pool.acquire().await.unwrap(), 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn invalid_sizes_are_refused() {
    assert_eq!(ResourcePool::builder(Conns::default()).max_size(0).build().unwrap_err().field(), "max_size");
    assert_eq!(
        ResourcePool::builder(Conns::default()).min_size(5).max_size(2).build().unwrap_err().field(),
        "min_size"
    );
}

/// `WhenFull::Refuse` (and a zero wait, which core defines as the same) fails at once with
/// `Overloaded` when every place is taken, and counts it; a free place is still served.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refuse_when_full_fails_at_once() {
    for when_full in [WhenFull::Refuse, WhenFull::wait(Duration::ZERO)] {
        let pool = ResourcePool::builder(Conns::default())
            .name("db")
            .max_size(1)
            .when_full(when_full)
            .build()
            .unwrap();
        let held = pool.acquire().await.unwrap();
        let mut refused = task::spawn(pool.acquire());
        let err = assert_ready!(refused.poll()).unwrap_err();
        assert_eq!(err.downcast_ref::<Overloaded>().unwrap().name(), "db");
        let s = pool.snapshot();
        assert_eq!((s.refused, s.timed_out, s.waiting), (1, 0, 0));
        drop(held);
        assert_eq!(*pool.acquire().await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn total_never_exceeds_max_under_contention() {
    let pool = pool(3);
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let g = pool.acquire().await.unwrap();
            assert!(pool.snapshot().total <= 3);
            tokio::time::sleep(Duration::from_millis(i % 4)).await;
            drop(g);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.waiting), (3, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancelling_an_acquire_mid_create_frees_the_place() {
    let pool = ResourcePool::builder(lifecycle_fn(|| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::io::Error>(1u8)
    }))
    .max_size(1)
    .build()
    .unwrap();
    let mut creating = task::spawn(pool.acquire());
    assert_pending!(creating.poll());
    assert_eq!((pool.snapshot().total, pool.snapshot().in_use), (1, 1));
    drop(creating);
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.destroyed), (0, 0, 0));
    let got = pool.acquire().await.unwrap();
    assert_eq!(*got, 1);
}

// === pools keep their promises (issue 15, kind 5) ===

/// Lets spawned tasks (refills, destroy hooks) run without moving the clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// The given input: `min_size(2)`, acquire + release left `total` at 1.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn min_size_is_kept_after_acquire_and_release() {
    let pool = ResourcePool::builder(Conns::default()).min_size(2).max_size(4).build().unwrap();
    let got = pool.acquire().await.unwrap();
    drop(got);
    settle().await;
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.created), (2, 2, 2));
}

/// Own cases: the pool fills to `min_size` by itself after build, and refills after every
/// way a resource can go (destroyed by the holder, detached, broken on recycle, idle).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn min_size_is_refilled_after_every_loss() {
    let conns = Conns::default();
    let pool = ResourcePool::builder(conns.clone())
        .min_size(2)
        .max_size(4)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    settle().await;
    assert_eq!(pool.snapshot().total, 2, "filled after build");

    let destroyed = pool.acquire().await.unwrap();
    Pooled::destroy(destroyed).await;
    settle().await;
    assert_eq!(pool.snapshot().total, 2, "refilled after destroy");

    let detached = pool.acquire().await.unwrap();
    assert!(Pooled::detach(detached).is_some());
    settle().await;
    assert_eq!(pool.snapshot().total, 2, "refilled after detach");

    let broken = pool.acquire().await.unwrap();
    conns.broken.lock().unwrap().push(*broken);
    drop(broken);
    let first = pool.acquire().await.unwrap(); // may meet the broken one and destroy it
    drop(first);
    let second = pool.acquire().await.unwrap();
    drop(second);
    settle().await;
    assert_eq!(pool.snapshot().total, 2, "refilled after a broken one");
    let s = pool.snapshot();
    assert_eq!(s.created, s.destroyed + s.detached + s.total as u64);
}

/// Own case: a failing `create` does not make the refill spin; the next event retries.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_refill_waits_for_the_next_event() {
    let conns = Conns::default();
    conns.fail_create.store(1, Ordering::SeqCst);
    let pool = ResourcePool::builder(conns.clone()).min_size(2).max_size(4).build().unwrap();
    settle().await;
    assert_eq!(pool.snapshot().total, 0);
    drop(pool.acquire().await.unwrap());
    settle().await;
    assert_eq!(pool.snapshot().total, 2);
}

/// Own case: built outside a runtime, the pool fills at its first use inside one.
#[test]
fn a_pool_built_outside_a_runtime_fills_at_first_use() {
    let pool = ResourcePool::builder(Conns::default()).min_size(3).max_size(4).build().unwrap();
    assert_eq!(pool.snapshot().total, 0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        drop(pool.acquire().await.unwrap());
        settle().await;
        assert_eq!(pool.snapshot().total, 3);
    });
}

/// The given input: after `close()`, the resource returned by its holder skipped the
/// destroy hook (the hook ran once for two resources while `destroyed` said 2).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_close_every_resource_goes_through_destroy_once() {
    let conns = Conns::default();
    let pool = ResourcePool::builder(conns.clone()).max_size(2).build().unwrap();
    let held = pool.acquire().await.unwrap();
    drop(pool.acquire().await.unwrap());
    pool.close().await;
    drop(held);
    settle().await;
    let mut destroyed = conns.destroyed.lock().unwrap().clone();
    destroyed.sort_unstable();
    assert_eq!(destroyed, vec![0, 1]);
    let s = pool.snapshot();
    assert_eq!((s.total, s.destroyed, s.dropped), (0, 2, 0));
}

/// Own case: a guard dropped after close outside any runtime cannot run the async hook:
/// the resource is dropped and counted as such, never as destroyed.
#[test]
fn a_guard_dropped_outside_a_runtime_after_close_is_counted_as_dropped() {
    let conns = Conns::default();
    let pool = ResourcePool::builder(conns.clone()).max_size(2).build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let held = rt.block_on(async {
        let held = pool.acquire().await.unwrap();
        pool.close().await;
        held
    });
    drop(held);
    let s = pool.snapshot();
    assert_eq!((s.total, s.destroyed, s.dropped), (0, 0, 1));
    assert!(conns.destroyed.lock().unwrap().is_empty());
}

/// Own case: an `acquire` cancelled while the recycle check runs hands the resource to the
/// destroy hook instead of dropping it silently.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_resource_whose_acquire_is_cancelled_mid_recycle_is_destroyed() {
    struct Slow(Arc<Mutex<Vec<u8>>>);
    impl Lifecycle for Slow {
        type Resource = u8;
        type Error = BoxError;
        async fn create(&self) -> Result<u8, BoxError> {
            Ok(1)
        }
        async fn recycle(&self, _: &mut u8) -> Result<(), BoxError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        }
        async fn destroy(&self, r: u8) {
            self.0.lock().unwrap().push(r);
        }
    }
    let destroyed = Arc::new(Mutex::new(Vec::new()));
    let pool = ResourcePool::builder(Slow(destroyed.clone())).max_size(1).build().unwrap();
    drop(pool.acquire().await.unwrap());
    let mut acquiring = task::spawn(pool.acquire());
    assert_pending!(acquiring.poll());
    drop(acquiring);
    settle().await;
    assert_eq!(*destroyed.lock().unwrap(), vec![1]);
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.destroyed), (0, 0, 1));
}

// === a panic in user code never takes the pool down (issue 15, kind 3) ===

/// Own cases: panicking `create`, `recycle` and `destroy` hooks.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn panicking_hooks_fail_only_their_call() {
    #[derive(Clone, Default)]
    struct Fragile {
        creates: Arc<AtomicUsize>,
    }
    impl Lifecycle for Fragile {
        type Resource = usize;
        type Error = BoxError;
        async fn create(&self) -> Result<usize, BoxError> {
            let n = self.creates.fetch_add(1, Ordering::SeqCst);
            assert!(n != 0, "create panicked");
            Ok(n)
        }
        async fn recycle(&self, r: &mut usize) -> Result<(), BoxError> {
            assert!(*r != 1, "recycle panicked");
            Ok(())
        }
        async fn destroy(&self, r: usize) {
            assert!(r != 1, "destroy panicked");
        }
    }
    let pool = ResourcePool::builder(Fragile::default()).max_size(1).build().unwrap();
    let err = pool.acquire().await.unwrap_err();
    let panicked = err.downcast_ref::<palisade_resource_pool::error::Panicked>().expect("a Panicked error");
    assert_eq!((panicked.component(), panicked.site()), ("hook", Some("create")));
    assert_eq!(pool.snapshot().total, 0);
    assert_eq!(*pool.acquire().await.unwrap(), 1);
    // Resource 1's recycle check panics: it is destroyed (whose hook panics too) and a new
    // one is created.
    assert_eq!(*pool.acquire().await.unwrap(), 2);
    let s = pool.snapshot();
    assert_eq!((s.total, s.created, s.destroyed), (1, 2, 1));
}

// === sizes and durations from a config (issue 15, kinds 1 and 2) ===

/// The given input: the resource pool's serde config with `max_size` 4294967295 used to
/// abort the process (a 103 GB `VecDeque::with_capacity`); `max_size(usize::MAX)` panicked
/// in tokio's semaphore.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_max_size_allocates_nothing_up_front() {
    #[cfg(feature = "serde")]
    {
        let config: palisade_resource_pool::ResourcePoolConfig =
            serde_json::from_str(r#"{"max_size": 4294967295}"#).unwrap();
        let pool = config.into_builder(Conns::default()).build().unwrap();
        assert_eq!(*pool.acquire().await.unwrap(), 0);
    }
    let err = ResourcePool::builder(Conns::default()).max_size(usize::MAX).build().unwrap_err();
    assert_eq!(err.field(), "max_size");
    let err = ResourcePool::builder(Conns::default())
        .min_size(usize::MAX)
        .max_size(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "min_size");
    let err = ResourcePool::builder(Conns::default()).min_size(4097).max_size(8192).build().unwrap_err();
    assert_eq!(err.field(), "min_size");
    let pool = ResourcePool::builder(Conns::default())
        .max_size(tokio::sync::Semaphore::MAX_PERMITS)
        .build()
        .unwrap();
    assert_eq!(*pool.acquire().await.unwrap(), 0);
}

/// Own case: huge timeouts mean "never".
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn huge_timeouts_mean_never() {
    let pool = ResourcePool::builder(Conns::default())
        .max_size(1)
        .when_full(WhenFull::wait(Duration::MAX))
        .idle_timeout(Duration::MAX)
        .build()
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let mut waiting = task::spawn(pool.acquire());
    assert_pending!(waiting.poll());
    // Saturated to palisade's "effectively never" (30 years).
    advance(Duration::from_secs(86_400 * 365 * 20)).await;
    assert_pending!(waiting.poll());
    drop(held);
    assert_eq!(*assert_ready!(waiting.poll()).unwrap(), 0);
}

/// Records each resource when its destroy hook starts, then takes a second.
struct SlowDestroy(Arc<Mutex<Vec<usize>>>, Arc<AtomicUsize>);

impl Lifecycle for SlowDestroy {
    type Resource = usize;
    type Error = BoxError;
    async fn create(&self) -> Result<usize, BoxError> {
        Ok(self.1.fetch_add(1, Ordering::SeqCst))
    }
    async fn destroy(&self, r: usize) {
        self.0.lock().unwrap().push(r);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Own case: a `Pooled::destroy` dropped while its hook runs still counts the resource gone.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cancelled_destroy_still_counts_the_resource_gone() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let pool =
        ResourcePool::builder(SlowDestroy(started.clone(), Arc::default())).max_size(1).build().unwrap();
    let got = pool.acquire().await.unwrap();
    let mut destroying = task::spawn(Pooled::destroy(got));
    assert_pending!(destroying.poll());
    drop(destroying);
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.destroyed), (0, 0, 1));
    assert_eq!(*started.lock().unwrap(), vec![0]);
}

/// Own case: a `close` dropped midway leaves no resource behind: the rest go through the
/// hook on spawned tasks.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cancelled_close_destroys_the_rest() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let pool =
        ResourcePool::builder(SlowDestroy(started.clone(), Arc::default())).max_size(3).build().unwrap();
    let held: Vec<_> =
        [pool.acquire().await.unwrap(), pool.acquire().await.unwrap(), pool.acquire().await.unwrap()].into();
    drop(held);
    assert_eq!(pool.snapshot().available, 3);
    let mut closing = task::spawn(pool.close());
    assert_pending!(closing.poll());
    drop(closing);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut started = started.lock().unwrap().clone();
    started.sort_unstable();
    assert_eq!(started, vec![0, 1, 2]);
    let s = pool.snapshot();
    assert_eq!((s.total, s.destroyed), (0, 3));
}

/// Own case: a listener that panics does not break acquire or release.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_listener_does_not_break_the_pool() {
    let pool = ResourcePool::builder(Conns::default())
        .max_size(2)
        .on_event(|e: &ResourcePoolEvent| {
            assert!(!matches!(e, ResourcePoolEvent::Created { .. }), "listener panicked");
        })
        .build()
        .unwrap();
    let got = pool.acquire().await.unwrap();
    assert_eq!(*got, 0);
    drop(got);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.in_use), (1, 1, 0));
}

/// Own case: `WhenFull::wait(d)` bounds the whole `acquire`, a slow `create` included (as
/// `acquire_timeout` did), and the place taken for the create is given back.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_bounded_wait_covers_a_slow_create() {
    let pool = ResourcePool::builder(lifecycle_fn(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, BoxError>(1u8)
    }))
    .name("db")
    .max_size(1)
    .when_full(WhenFull::wait(Duration::from_secs(2)))
    .build()
    .unwrap();
    let mut acquiring = task::spawn(pool.acquire());
    assert_pending!(acquiring.poll());
    advance(Duration::from_secs(2)).await;
    let err = assert_ready!(acquiring.poll()).unwrap_err();
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), Duration::from_secs(2));
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.timed_out), (0, 0, 1));
}

/// Own case: the config round-trips through serde with the new `when_full` form.
#[cfg(feature = "serde")]
#[test]
fn the_config_round_trips_through_serde() {
    use palisade_resource_pool::ResourcePoolConfig;
    let mut config = ResourcePoolConfig::default();
    config.name = "db".into();
    config.max_size = 16;
    config.when_full = WhenFull::Refuse;
    config.idle_timeout = Some(Duration::from_secs(300));
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<ResourcePoolConfig>(&json).unwrap(), config);
    let defaults: ResourcePoolConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, ResourcePoolConfig::default());
    assert_eq!(defaults.when_full, WhenFull::wait(Duration::MAX));
    assert!(serde_json::from_str::<ResourcePoolConfig>(r#"{ "acquire_timeout": "1s" }"#).is_err());
}
