#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4b: a `create` or `recycle` that never answers no longer wedges the pool
//! (`create_timeout`, `recycle_timeout`, and `destroy_timeout` for a teardown), the background refill no longer keeps the pool's
//! state alive after its last handle is dropped, and `idle_timeout` destroys idle resources
//! under LIFO reuse (a reaper task wakes at the oldest idle resource's deadline; every
//! acquire and release also checks the bottom of the idle stack).

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::rejection::{find, TimedOut};
use palisade_core::BoxError;
use palisade_resource_pool::error::HookTimedOut;
use palisade_resource_pool::{
    DestroyReason, Lifecycle, Pooled, ResourcePool, ResourcePoolConfig, ResourcePoolEvent,
};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, task};

/// Numbered resources. The first `hang_creates` creates never answer, resources listed in
/// `hang_recycle` never answer their check; `destroyed` records every destroy hook run
/// (with its reason taken from the events, see `Recorder`); `marker` lets a test observe
/// the hooks being dropped (the pool's shared state going away).
#[derive(Clone, Default)]
struct Hooks {
    next: Arc<AtomicUsize>,
    hang_creates: Arc<AtomicUsize>,
    hang_recycle: Arc<Mutex<Vec<usize>>>,
    broken: Arc<Mutex<Vec<usize>>>,
    destroyed: Arc<Mutex<Vec<usize>>>,
    hang_destroy: Arc<AtomicBool>,
    marker: Arc<()>,
}

impl Lifecycle for Hooks {
    type Resource = usize;
    type Error = BoxError;

    async fn create(&self) -> Result<usize, BoxError> {
        if self.hang_creates.load(Ordering::SeqCst) > 0 {
            self.hang_creates.fetch_sub(1, Ordering::SeqCst);
            pending::<()>().await;
        }
        Ok(self.next.fetch_add(1, Ordering::SeqCst))
    }

    async fn recycle(&self, r: &mut usize) -> Result<(), BoxError> {
        if self.hang_recycle.lock().unwrap().contains(r) {
            pending::<()>().await;
        }
        if self.broken.lock().unwrap().contains(r) {
            return Err("broken".into());
        }
        Ok(())
    }

    async fn destroy(&self, r: usize) {
        self.destroyed.lock().unwrap().push(r);
        if self.hang_destroy.load(Ordering::SeqCst) {
            pending::<()>().await;
        }
    }
}

impl Hooks {
    /// Makes resource `r`'s recycle check fail (it is then destroyed).
    fn broken_by_recycle(&self, r: usize) {
        self.broken.lock().unwrap().push(r);
    }
}

type Events = Arc<Mutex<Vec<ResourcePoolEvent>>>;

fn recorder() -> (Events, impl Fn(&ResourcePoolEvent) + Send + Sync + 'static) {
    let events: Events = Arc::default();
    let seen = events.clone();
    (events, move |e: &ResourcePoolEvent| seen.lock().unwrap().push(e.clone()))
}

/// Lets spawned tasks (refills, destroy hooks) run without moving the clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

// === 1. a create that never answers ===

/// The given input: `max_size(1)`, the default unbounded wait, a `create` that never
/// answers. Before: both acquirers waited for ever. Now the hung create gives up after the
/// default `create_timeout` (30 s): its acquirer gets a typed error, the place goes back
/// and the waiting acquirer gets a resource; the failure is counted and reported.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_create_times_out_and_gives_its_place_back() {
    let hooks = Hooks::default();
    hooks.hang_creates.store(1, Ordering::SeqCst);
    let (events, listener) = recorder();
    let pool =
        ResourcePool::builder(hooks.clone()).name("db").max_size(1).on_event(listener).build().unwrap();

    let mut first = task::spawn(pool.acquire());
    assert_pending!(first.poll());
    let mut second = task::spawn(pool.acquire());
    assert_pending!(second.poll());
    assert_eq!(pool.snapshot().waiting, 1);

    advance(Duration::from_secs(29)).await;
    assert_pending!(first.poll());
    advance(Duration::from_secs(1)).await;
    let err = assert_ready!(first.poll()).unwrap_err();
    let timed_out = err.downcast_ref::<HookTimedOut>().expect("a HookTimedOut");
    assert_eq!(
        (timed_out.name(), timed_out.site(), timed_out.after()),
        ("db", "create", Duration::from_secs(30))
    );
    // Found as a timeout through the source chain.
    assert_eq!(find::<TimedOut>(&*err).unwrap().after(), Duration::from_secs(30));

    assert!(second.is_woken());
    let got = assert_ready!(second.poll()).unwrap();
    assert_eq!(*got, 0);
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.waiting, s.created, s.create_failed), (1, 1, 0, 1, 1));
    let failed: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ResourcePoolEvent::CreateFailed { error } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec!["the create hook of pool `db` did not finish within 30s".to_owned()]);
}

/// Own case: a configured `create_timeout` is used, and a bounded wait shorter than it
/// still wins (the whole `acquire` is bounded by `when_full`).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_configured_create_timeout_is_used_and_the_wait_bound_still_covers_it() {
    let hooks = Hooks::default();
    hooks.hang_creates.store(2, Ordering::SeqCst);
    let pool = ResourcePool::builder(hooks.clone())
        .max_size(1)
        .create_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut acquiring = task::spawn(pool.acquire());
    assert_pending!(acquiring.poll());
    advance(Duration::from_secs(2)).await;
    let err = assert_ready!(acquiring.poll()).unwrap_err();
    assert_eq!(err.downcast_ref::<HookTimedOut>().unwrap().after(), Duration::from_secs(2));

    let pool = ResourcePool::builder(hooks.clone())
        .max_size(1)
        .create_timeout(Duration::from_secs(10))
        .when_full(palisade_core::when_full::WhenFull::wait(Duration::from_secs(3)))
        .build()
        .unwrap();
    let mut acquiring = task::spawn(pool.acquire());
    assert_pending!(acquiring.poll());
    advance(Duration::from_secs(3)).await;
    let err = assert_ready!(acquiring.poll()).unwrap_err();
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), Duration::from_secs(3));
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.timed_out), (0, 0, 1));
}

/// Own case: `create_timeout(Duration::MAX)` saturates to "effectively never" — no
/// overflow, and the create is still waited for after 20 years.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_create_timeout_means_never() {
    let hooks = Hooks::default();
    hooks.hang_creates.store(1, Ordering::SeqCst);
    let pool = ResourcePool::builder(hooks).max_size(1).create_timeout(Duration::MAX).build().unwrap();
    let mut acquiring = task::spawn(pool.acquire());
    assert_pending!(acquiring.poll());
    advance(Duration::from_secs(86_400 * 365 * 20)).await;
    assert_pending!(acquiring.poll());
    drop(acquiring);
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.create_failed), (0, 0, 0));
}

/// Own case: a `recycle` that never answers fails its check after `recycle_timeout`
/// (default 5 s): the resource goes through `destroy` (reason `Broken`) and the caller
/// gets a new one.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_recycle_destroys_the_resource_and_the_caller_gets_another() {
    let hooks = Hooks::default();
    let (events, listener) = recorder();
    let pool = ResourcePool::builder(hooks.clone()).max_size(1).on_event(listener).build().unwrap();
    drop(pool.acquire().await.unwrap());
    hooks.hang_recycle.lock().unwrap().push(0);

    let mut acquiring = task::spawn(pool.acquire());
    assert_pending!(acquiring.poll());
    advance(Duration::from_secs(5)).await;
    let got = assert_ready!(acquiring.poll()).unwrap();
    assert_eq!(*got, 1);
    assert_eq!(*hooks.destroyed.lock().unwrap(), vec![0]);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ResourcePoolEvent::Destroyed { reason: DestroyReason::Broken, .. })));
    let s = pool.snapshot();
    assert_eq!((s.total, s.created, s.destroyed), (1, 2, 1));
}

/// The defaults, zero refused with the field's name, and the serde form.
#[test]
fn create_and_recycle_timeouts_have_finite_defaults_and_refuse_zero() {
    let config = ResourcePoolConfig::default();
    assert_eq!(
        (config.create_timeout, config.recycle_timeout),
        (Duration::from_secs(30), Duration::from_secs(5))
    );
    let err = ResourcePool::builder(Hooks::default()).create_timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.field(), "create_timeout");
    let err = ResourcePool::builder(Hooks::default()).recycle_timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.field(), "recycle_timeout");
    assert_eq!(config.destroy_timeout, Duration::from_secs(5));
    let err = ResourcePool::builder(Hooks::default()).destroy_timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.field(), "destroy_timeout");
    // Huge values build (they saturate when used).
    ResourcePool::builder(Hooks::default())
        .create_timeout(Duration::MAX)
        .recycle_timeout(Duration::MAX)
        .destroy_timeout(Duration::MAX)
        .build()
        .unwrap();
}

#[cfg(feature = "serde")]
#[test]
fn create_and_recycle_timeouts_round_trip_through_serde() {
    let mut config = ResourcePoolConfig::default();
    config.create_timeout = Duration::from_secs(3);
    config.recycle_timeout = Duration::from_millis(250);
    config.destroy_timeout = Duration::from_secs(1);
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<ResourcePoolConfig>(&json).unwrap(), config);
    let defaults: ResourcePoolConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults.create_timeout, Duration::from_secs(30));
    let zero: ResourcePoolConfig = serde_json::from_str(r#"{ "create_timeout": "0s" }"#).unwrap();
    assert_eq!(zero.into_builder(Hooks::default()).build().unwrap_err().field(), "create_timeout");
    let huge: ResourcePoolConfig =
        serde_json::from_str(r#"{ "recycle_timeout": "200000000000000d" }"#).unwrap();
    huge.into_builder(Hooks::default()).build().unwrap();
}

/// Own case: a `destroy` that never finishes no longer stalls `close` (or an `acquire`
/// meeting a broken resource) for ever: it is cut short after `destroy_timeout` (default
/// 5 s), the resource counts as destroyed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_destroy_is_cut_short() {
    let hooks = Hooks::default();
    let pool = ResourcePool::builder(hooks.clone()).max_size(2).build().unwrap();
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    drop((a, b));
    hooks.hang_destroy.store(true, Ordering::SeqCst);

    // An acquire meeting a broken resource destroys it inline.
    hooks.broken_by_recycle(1);
    let mut acquiring = task::spawn(pool.acquire());
    assert_pending!(acquiring.poll());
    advance(Duration::from_secs(5)).await;
    let got = assert_ready!(acquiring.poll()).unwrap();
    assert_eq!(*got, 0);
    drop(got);

    let mut closing = task::spawn(pool.close());
    assert_pending!(closing.poll());
    advance(Duration::from_secs(5)).await;
    assert_ready!(closing.poll());
    assert_eq!(*hooks.destroyed.lock().unwrap(), vec![1, 0]);
    let s = pool.snapshot();
    assert_eq!((s.total, s.destroyed), (0, 2));
}

/// Own case: a hung `destroy` on a spawned task (a guard given back after `close`) ends
/// after `destroy_timeout`, so the task does not keep the pool's state for ever.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_destroy_on_a_spawned_task_ends() {
    let hooks = Hooks::default();
    let state = Arc::downgrade(&hooks.marker);
    hooks.hang_destroy.store(true, Ordering::SeqCst);
    let pool = ResourcePool::builder(hooks).max_size(1).build().unwrap();
    let held = pool.acquire().await.unwrap();
    pool.close().await;
    drop(held);
    drop(pool);
    settle().await;
    assert_eq!(alive_tasks(), 1, "the destroy hook runs");
    advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(alive_tasks(), 0);
    assert!(state.upgrade().is_none());
}

// === 1. the refill task and the pool's lifetime ===

/// The given input: the background refill runs a `create` that never answers (no
/// `create_timeout`); once every handle is dropped, the refill stops and the pool's state
/// (here: its hooks) is freed. Before: the task held the state for ever.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_refill_does_not_keep_the_pool_alive_after_its_last_handle() {
    let hooks = Hooks::default();
    hooks.hang_creates.store(usize::MAX, Ordering::SeqCst);
    let state = Arc::downgrade(&hooks.marker);
    let pool =
        ResourcePool::builder(hooks).min_size(1).max_size(2).create_timeout(Duration::MAX).build().unwrap();
    let other = pool.clone();
    settle().await;
    assert_eq!(alive_tasks(), 1, "the refill runs its create");
    assert_eq!(pool.snapshot().total, 1, "the create in progress is counted");
    drop(pool);
    settle().await;
    assert_eq!(alive_tasks(), 1, "a handle is left: the refill goes on");
    drop(other);
    settle().await;
    assert_eq!(alive_tasks(), 0, "the refill stopped");
    assert!(state.upgrade().is_none(), "the pool's state was freed");
}

/// Own case: a guard outliving every handle gives its resource back without restarting
/// the refill, and then the state is freed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_guard_outliving_the_pool_does_not_restart_the_refill() {
    let hooks = Hooks::default();
    let state = Arc::downgrade(&hooks.marker);
    let pool = ResourcePool::builder(hooks.clone()).min_size(2).max_size(2).build().unwrap();
    settle().await;
    let held = pool.acquire().await.unwrap();
    Pooled::detach(pool.acquire().await.unwrap());
    hooks.hang_creates.store(usize::MAX, Ordering::SeqCst);
    drop(pool);
    drop(held);
    settle().await;
    assert_eq!(alive_tasks(), 0);
    drop(hooks);
    assert!(state.upgrade().is_none());
}

/// Own case: closing the pool also stops a refill stuck in `create`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_stops_a_refill_stuck_in_create() {
    let hooks = Hooks::default();
    hooks.hang_creates.store(usize::MAX, Ordering::SeqCst);
    let pool =
        ResourcePool::builder(hooks).min_size(1).max_size(1).create_timeout(Duration::MAX).build().unwrap();
    settle().await;
    assert_eq!(alive_tasks(), 1);
    pool.close().await;
    settle().await;
    assert_eq!(alive_tasks(), 0);
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use), (0, 0));
}

/// Own case: with the default `create_timeout`, a refill whose create hangs gives up after
/// 30 s (counted as a failed create, its place back), and the next event refills.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refill_whose_create_hangs_gives_up_and_the_next_event_refills() {
    let hooks = Hooks::default();
    hooks.hang_creates.store(1, Ordering::SeqCst);
    let pool = ResourcePool::builder(hooks).min_size(1).max_size(1).build().unwrap();
    settle().await;
    assert_eq!(pool.snapshot().in_use, 1, "the refill holds the only place");
    advance(Duration::from_secs(30)).await;
    settle().await;
    let s = pool.snapshot();
    assert_eq!((s.total, s.in_use, s.create_failed, alive_tasks()), (0, 0, 1, 0));
    drop(pool.acquire().await.unwrap());
    settle().await;
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.created), (1, 1, 1));
}

// === 2. idle expiry under LIFO reuse ===

/// Three idle resources, a third of them reused at low load (every 4 s).
async fn three_idle_then_one_reused(min_size: usize) -> (ResourcePool<Hooks>, Hooks, Events) {
    let hooks = Hooks::default();
    let (events, listener) = recorder();
    let pool = ResourcePool::builder(hooks.clone())
        .min_size(min_size)
        .max_size(3)
        .idle_timeout(Duration::from_secs(10))
        .on_event(listener)
        .build()
        .unwrap();
    let all = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    drop(all);
    settle().await;
    assert_eq!(pool.snapshot().available, 3);
    for _ in 0..5 {
        advance(Duration::from_secs(4)).await;
        let got = pool.acquire().await.unwrap();
        // LIFO: always the one released last.
        assert_eq!(*got, 2);
        drop(got);
        settle().await;
    }
    (pool, hooks, events)
}

/// The given input: max 3, all idle, one acquired and released repeatedly at low load;
/// past `idle_timeout` the two at the bottom of the idle stack are destroyed, through the
/// hook exactly once each, and the snapshot says so; `min_size` (1) is kept.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_resources_at_the_bottom_expire_under_lifo_reuse() {
    let (pool, hooks, events) = three_idle_then_one_reused(1).await;
    let mut destroyed = hooks.destroyed.lock().unwrap().clone();
    destroyed.sort_unstable();
    assert_eq!(destroyed, vec![0, 1]);
    let idle_destroys = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ResourcePoolEvent::Destroyed { reason: DestroyReason::Idle, .. }))
        .count();
    assert_eq!(idle_destroys, 2);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.in_use, s.created, s.destroyed), (1, 1, 0, 3, 2));
    // Once more past the timeout: the last one is kept for `min_size`.
    advance(Duration::from_secs(60)).await;
    drop(pool.acquire().await.unwrap());
    settle().await;
    assert_eq!(hooks.destroyed.lock().unwrap().len(), 2);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.created), (1, 1, 3));
}

/// Own case: `min_size(2)` keeps one of the two idle ones.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_expiry_under_lifo_reuse_keeps_min_size() {
    let (pool, hooks, _) = three_idle_then_one_reused(2).await;
    assert_eq!(*hooks.destroyed.lock().unwrap(), vec![0]);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.destroyed), (2, 2, 1));
}

/// Own case: with no traffic at all, the pool's reaper destroys each idle resource as soon
/// as it has been idle for `idle_timeout` (not a tick later), down to `min_size`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_idle_pool_destroys_expired_resources_by_itself() {
    let hooks = Hooks::default();
    let pool = ResourcePool::builder(hooks.clone())
        .min_size(1)
        .max_size(3)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let [a, b, c] =
        [pool.acquire().await.unwrap(), pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    drop(a);
    advance(Duration::from_secs(2)).await;
    drop(b);
    drop(c);
    settle().await;
    advance(Duration::from_millis(7_999)).await;
    settle().await;
    assert!(hooks.destroyed.lock().unwrap().is_empty(), "none idle for 10 s yet");
    advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(*hooks.destroyed.lock().unwrap(), vec![0], "the first released, at its deadline");
    advance(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(*hooks.destroyed.lock().unwrap(), vec![0, 1], "the next one, down to min_size");
    advance(Duration::from_secs(3600)).await;
    settle().await;
    assert_eq!(hooks.destroyed.lock().unwrap().len(), 2);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.destroyed), (1, 1, 2));

    // A resource released later expires in its turn (the parked reaper wakes up).
    let kept = pool.acquire().await.unwrap();
    let extra = pool.acquire().await.unwrap();
    drop(kept);
    drop(extra);
    settle().await;
    advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(hooks.destroyed.lock().unwrap().len(), 3);
    let s = pool.snapshot();
    assert_eq!((s.total, s.available, s.destroyed), (1, 1, 3));
}

/// Own case: the reaper is one task that stops with the last handle (freeing the pool's
/// state) or with `close`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_reaper_stops_with_the_last_handle_or_close() {
    let hooks = Hooks::default();
    let state = Arc::downgrade(&hooks.marker);
    let pool =
        ResourcePool::builder(hooks).max_size(2).idle_timeout(Duration::from_secs(10)).build().unwrap();
    drop(pool.acquire().await.unwrap());
    settle().await;
    assert_eq!(alive_tasks(), 1, "the reaper");
    drop(pool);
    settle().await;
    assert_eq!(alive_tasks(), 0);
    assert!(state.upgrade().is_none());

    let pool = ResourcePool::builder(Hooks::default()).idle_timeout(Duration::from_secs(10)).build().unwrap();
    settle().await;
    assert_eq!(alive_tasks(), 1);
    pool.close().await;
    settle().await;
    assert_eq!(alive_tasks(), 0);
    // No reaper for an idle timeout that means never.
    let _never = ResourcePool::builder(Hooks::default()).idle_timeout(Duration::MAX).build().unwrap();
    settle().await;
    assert_eq!(alive_tasks(), 0);
}

/// Own case: the oldest idle resources are also checked at every acquire and release, so
/// expiry holds when the reaper is busy (here stuck for ever in a `destroy` hook, with no
/// `destroy_timeout`).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acquire_and_release_expire_idle_resources_while_the_reaper_is_stuck() {
    for by_release in [false, true] {
        let hooks = Hooks::default();
        let pool = ResourcePool::builder(hooks.clone())
            .max_size(5)
            .idle_timeout(Duration::from_secs(10))
            .destroy_timeout(Duration::MAX)
            .build()
            .unwrap();
        let mut got: Vec<_> = Vec::new();
        for _ in 0..4 {
            got.push(pool.acquire().await.unwrap());
        }
        let held = got.pop().unwrap(); // resource 3
        hooks.hang_destroy.store(true, Ordering::SeqCst);
        drop(got.remove(0)); // resource 0, released at 0 s
        advance(Duration::from_secs(1)).await;
        drop(got); // resources 1 and 2, released at 1 s
        advance(Duration::from_secs(9)).await;
        settle().await;
        // The reaper took resource 0 at 10 s and hangs in its destroy hook.
        assert_eq!(*hooks.destroyed.lock().unwrap(), vec![0]);
        hooks.hang_destroy.store(false, Ordering::SeqCst);
        if by_release {
            advance(Duration::from_secs(10)).await;
            settle().await;
            assert_eq!(*hooks.destroyed.lock().unwrap(), vec![0], "the reaper is stuck");
            drop(held);
            settle().await;
        } else {
            // Released at 10.5 s, before 1 and 2 expire: on top of them in the idle stack.
            advance(Duration::from_millis(500)).await;
            drop(held);
            advance(Duration::from_millis(1500)).await;
            settle().await;
            assert_eq!(*hooks.destroyed.lock().unwrap(), vec![0], "the reaper is stuck");
            let top = pool.acquire().await.unwrap();
            assert_eq!(*top, 3);
            drop(top);
        }
        let mut destroyed = hooks.destroyed.lock().unwrap().clone();
        destroyed.sort_unstable();
        assert_eq!(destroyed, vec![0, 1, 2], "by_release={by_release}");
        let s = pool.snapshot();
        // Resource 0 is still being destroyed (and counted), 3 is idle.
        assert_eq!((s.total, s.available, s.destroyed), (2, 1, 2), "by_release={by_release}");
    }
}

// === extreme hook bounds (issue 15, kind 8, for the new fields) ===

/// `create`, `recycle` and `destroy` that answer at once or after 2 s.
struct MaybeSlow(bool);

impl Lifecycle for MaybeSlow {
    type Resource = u8;
    type Error = BoxError;

    async fn create(&self) -> Result<u8, BoxError> {
        if self.0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(1)
    }

    async fn recycle(&self, _: &mut u8) -> Result<(), BoxError> {
        if self.0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    }

    async fn destroy(&self, _: u8) {
        if self.0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Every combination of extreme `create_timeout`, `recycle_timeout` and `destroy_timeout`
/// gives a `ConfigError` naming a zero one, or a pool that serves acquire, release and
/// close without panicking or hanging (an hour of paused time): each acquire lends or
/// fails with `HookTimedOut`.
#[test]
fn extreme_hook_timeouts_are_refused_or_served() {
    const DURATIONS: [Duration; 7] = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_secs(3),
        Duration::from_secs(86_400 * 365 * 100),
        palisade_core::time::FAR_FUTURE,
        Duration::MAX,
    ];
    for create in DURATIONS {
        for recycle in DURATIONS {
            for destroy in DURATIONS {
                for slow in [false, true] {
                    let built = ResourcePool::builder(MaybeSlow(slow))
                        .max_size(1)
                        .create_timeout(create)
                        .recycle_timeout(recycle)
                        .destroy_timeout(destroy)
                        .build();
                    let pool = match built {
                        Err(err) => {
                            let zero = [
                                ("create_timeout", create),
                                ("recycle_timeout", recycle),
                                ("destroy_timeout", destroy),
                            ]
                            .into_iter()
                            .find(|(_, d)| d.is_zero())
                            .map(|(field, _)| field);
                            assert_eq!(Some(err.field()), zero, "{create:?} {recycle:?} {destroy:?}");
                            continue;
                        }
                        Ok(pool) => pool,
                    };
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .start_paused(true)
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let served = tokio::time::timeout(Duration::from_secs(3600), async {
                            for _ in 0..3 {
                                match pool.acquire().await {
                                    Ok(got) => drop(got),
                                    Err(err) => assert_eq!(
                                        err.downcast_ref::<HookTimedOut>().map(HookTimedOut::site),
                                        Some("create"),
                                        "{err}"
                                    ),
                                }
                            }
                            pool.close().await;
                        })
                        .await;
                        assert!(served.is_ok(), "hung: {create:?} {recycle:?} {destroy:?} slow={slow}");
                    });
                }
            }
        }
    }
}
