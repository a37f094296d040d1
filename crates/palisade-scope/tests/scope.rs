#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::rejection::Closed;
use palisade_resource_pool::{lifecycle_fn, LifecycleFn, ResourcePool};
use palisade_scope::error::{Cancelled, Panicked};
use palisade_scope::Scope;
use tokio::time::{advance, sleep};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancellation_reaches_grandchildren() {
    let root = Scope::new("root");
    let child = root.child();
    let grandchild = child.child();
    let sibling = root.child();
    let jobs: Vec<_> = [&root, &child, &grandchild, &sibling]
        .iter()
        .map(|s| s.spawn(async { sleep(secs(3600)).await }))
        .collect();
    settle().await;
    child.cancel();
    // Cancelling a child reaches its child, not its parent or sibling.
    assert!(child.is_cancelled() && grandchild.is_cancelled());
    assert!(!root.is_cancelled() && !sibling.is_cancelled());
    root.cancel();
    assert!(sibling.is_cancelled());
    for job in jobs {
        assert!(job.await.unwrap_err().is::<Cancelled>());
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancelled_task_drops_its_future() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let scope = Scope::new("s");
    let flag = Flag(dropped.clone());
    let job = scope.spawn(async move {
        let _flag = flag;
        sleep(secs(3600)).await;
    });
    settle().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    scope.cancel();
    assert!(job.await.unwrap_err().is::<Cancelled>());
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn drain_with_a_deadline_reports_finished_and_cancelled() {
    let scope = Scope::new("server");
    let child = scope.child();
    let quick = scope.spawn(async {
        sleep(secs(1)).await;
        1
    });
    let in_child = child.spawn(async {
        sleep(secs(4)).await;
        2
    });
    let slow = scope.spawn(async {
        sleep(secs(60)).await;
        3
    });
    settle().await;
    let started = tokio::time::Instant::now();
    let report = scope.close(secs(5)).await;
    // Waited for the deadline (the slow task kept it busy), not for the slow task.
    assert_eq!(started.elapsed(), secs(5));
    assert_eq!((report.finished, report.cancelled), (2, 1));
    assert!(!report.drained());
    assert_eq!(quick.await.unwrap(), 1);
    assert_eq!(in_child.await.unwrap(), 2);
    assert!(slow.await.unwrap_err().is::<Cancelled>());
    // A closed scope (and its child) refuses new work with `Closed`.
    assert!(scope.spawn(async {}).await.unwrap_err().is::<Closed>());
    assert!(child.spawn(async {}).await.unwrap_err().is::<Closed>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn drain_returns_as_soon_as_everything_finished() {
    let scope = Scope::new("server");
    let a = scope.spawn(async { sleep(secs(2)).await });
    settle().await;
    let started = tokio::time::Instant::now();
    let report = scope.close(secs(30)).await;
    assert_eq!(started.elapsed(), secs(2));
    assert_eq!((report.finished, report.cancelled), (1, 0));
    assert!(report.drained());
    a.await.unwrap();
    // Closing again reports nothing new.
    assert_eq!(scope.close(secs(1)).await, palisade_scope::DrainReport::default());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn teardown_runs_once_in_reverse_order_children_first() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let root = Scope::new("root");
    let child = root.child();
    let record = |name: &'static str| {
        let log = log.clone();
        move |_v: Arc<&'static str>| async move {
            // An async teardown that takes time: the next one waits for it.
            sleep(Duration::from_millis(10)).await;
            log.lock().unwrap().push(name);
        }
    };
    root.provide("db", record("db")).unwrap();
    root.provide("cache", record("cache")).unwrap();
    child.provide("session", record("session")).unwrap();
    // Visible to the scope and its children; the newest value of a type wins.
    assert_eq!(*child.get::<&'static str>().unwrap(), "session");
    assert_eq!(*root.get::<&'static str>().unwrap(), "cache");
    assert!(root.get::<u32>().is_none());
    let report = root.close(secs(1)).await;
    assert_eq!(report.torn_down, 3);
    assert_eq!(*log.lock().unwrap(), ["session", "cache", "db"]);
    // Exactly once.
    root.close(secs(1)).await;
    drop(child);
    drop(root);
    settle().await;
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_detached_child_sees_no_resources_and_is_not_drained() {
    let root = Scope::new("root");
    root.provide(7u32, |_| async {}).unwrap();
    let detached = root.detached(secs(3600));
    let child = root.child();
    assert_eq!(child.get::<u32>().as_deref(), Some(&7));
    assert!(detached.get::<u32>().is_none());
    let job = detached.spawn(async { sleep(secs(100)).await });
    settle().await;
    // The parent's close does not wait for the detached child's work...
    let report = root.close(secs(10)).await;
    assert_eq!((report.finished, report.cancelled), (0, 0));
    // ...but its cancellation reaches it.
    assert!(detached.is_cancelled());
    assert!(job.await.unwrap_err().is::<Cancelled>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_detached_child_has_its_own_timeout() {
    let root = Scope::new("root");
    let detached = root.detached(secs(5));
    let job = detached.spawn(async { sleep(secs(100)).await });
    advance(Duration::from_millis(4999)).await;
    assert!(!detached.is_cancelled());
    advance(Duration::from_millis(1)).await;
    settle().await;
    assert!(detached.is_cancelled() && !root.is_cancelled());
    assert!(job.await.unwrap_err().is::<Cancelled>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_limit_bounds_tasks_running_at_once() {
    let scope = Scope::builder("jobs").limit(2).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<_> = (0..6)
        .map(|_| {
            let (running, peak) = (running.clone(), peak.clone());
            scope.spawn(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                sleep(secs(1)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    for job in jobs {
        job.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(started.elapsed(), secs(3));
    assert_eq!(Scope::builder("x").limit(0).build().unwrap_err().field(), "limit");
    assert_eq!(Scope::builder("x").limit(usize::MAX).build().unwrap_err().field(), "limit");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn leaving_a_scope_leaves_no_task_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let root = Scope::new("root");
    let child = root.child();
    let detached = child.detached(secs(3600)); // its timer is a task too
    for s in [&root, &child, &detached] {
        for _ in 0..10 {
            drop(s.spawn(async { sleep(secs(3600)).await }));
        }
    }
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), before + 31);
    let report = root.close(secs(1)).await;
    assert_eq!(report.cancelled, 20);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), before);
    // Dropping the last handle of a scope cancels its tasks too.
    let scope = Scope::new("dropped");
    for _ in 0..5 {
        drop(scope.spawn(async { sleep(secs(3600)).await }));
    }
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), before + 5);
    drop(scope);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), before);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pool_is_torn_down_through_its_destroy_hook() {
    let destroyed = Arc::new(AtomicUsize::new(0));
    let d = destroyed.clone();
    let lifecycle = lifecycle_fn(|| async { Ok::<_, std::io::Error>(0u8) }).on_destroy(move |_| {
        let d = d.clone();
        async move {
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    let pool = ResourcePool::builder(lifecycle).min_size(3).max_size(3).build().unwrap();
    pool.fill().await.unwrap();
    let scope = Scope::new("app");
    scope.provide(pool, |pool| async move { pool.close().await }).unwrap();
    let held = scope.get::<ResourcePool<LifecycleFn<u8>>>().unwrap().acquire().await.unwrap();
    drop(held);
    scope.close(secs(1)).await;
    settle().await;
    assert_eq!(destroyed.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn panics_in_tasks_and_teardowns_are_contained() {
    let scope = Scope::new("s");
    let err = scope.spawn(async { panic!("boom") }).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Panicked>().unwrap().message(), "boom");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    scope
        .provide(1u8, move |_| async move {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    scope.provide(2u16, |_| async { panic!("teardown") }).unwrap();
    let report = scope.close(secs(1)).await;
    assert_eq!(report.torn_down, 2);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // Providing to a closed scope is refused; the value is torn down anyway.
    let r = ran.clone();
    let refused = scope.provide(3u32, move |_| async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(refused.unwrap_err().is::<Closed>());
    settle().await;
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn a_timeout_outside_a_runtime_is_a_config_error_not_a_panic() {
    let root = Scope::new("root");
    let err = Scope::builder("t").timeout(secs(1)).build().unwrap_err();
    assert_eq!(err.field(), "timeout");
    // The shortcut still links cancellation.
    let detached = root.detached(secs(1));
    root.cancel();
    assert!(detached.is_cancelled());
    // A huge timeout saturates inside a runtime.
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let s = Scope::builder("t").timeout(Duration::MAX).build().unwrap();
        tokio::task::yield_now().await;
        assert!(!s.is_cancelled());
    });
}

#[cfg(feature = "serde")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn configs_come_from_files_and_round_trip() {
    use palisade_scope::{PollerConfig, ScopeConfig};
    let config: ScopeConfig = serde_json::from_str(r#"{"limit": 2, "timeout": "5s"}"#).unwrap();
    assert_eq!(config, ScopeConfig { limit: Some(2), timeout: Some(Duration::from_secs(5)) });
    let again: ScopeConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
    assert!(serde_json::from_str::<ScopeConfig>(r#"{"limits": 2}"#).is_err());
    let scope = Scope::builder("file").config(config).build().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(scope.is_cancelled(), "the timeout from the file applies");
    let bad: ScopeConfig = serde_json::from_str(r#"{"limit": 0}"#).unwrap();
    assert_eq!(Scope::builder("bad").config(bad).build().unwrap_err().field(), "limit");

    let poller: PollerConfig =
        serde_json::from_str(r#"{"interval": "10s", "jitter": 0.5, "backoff": {"fixed": {"delay": "1s"}}}"#)
            .unwrap();
    assert_eq!(poller.interval, Duration::from_secs(10));
    assert_eq!(poller.max_backoff, None, "defaults fill the rest");
    let again: PollerConfig = serde_json::from_str(&serde_json::to_string(&poller).unwrap()).unwrap();
    assert_eq!(again, poller);
    let bad: PollerConfig = serde_json::from_str(r#"{"jitter": 2.0}"#).unwrap();
    assert_eq!(bad.validate().unwrap_err().field(), "jitter");
}
