#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::rejection::{Closed, TimedOut};
use palisade_core::BoxError;
use palisade_pool::resource::{DestroyReason, Lifecycle, ResourceEvent};
use palisade_pool::{lifecycle_fn, Pool, Pooled};
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

fn pool(max: usize) -> Pool<Conns> {
    Pool::builder(Conns::default()).max_size(max).build().unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn guard_returns_the_resource_on_drop() {
    let pool = pool(2);
    let a = pool.acquire().await.unwrap();
    assert_eq!(*a, 0);
    let s = pool.stats();
    assert_eq!((s.total, s.available, s.in_use), (1, 0, 1));
    drop(a);
    let s = pool.stats();
    assert_eq!((s.total, s.available, s.in_use), (1, 1, 0));
    assert_eq!(*pool.acquire().await.unwrap(), 0);
    assert_eq!(pool.stats().created, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acquire_times_out_when_everything_is_lent() {
    let pool = Pool::builder(Conns::default())
        .name("db")
        .max_size(1)
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let mut waiting = task::spawn(pool.acquire());
    assert_pending!(waiting.poll());
    assert_eq!(pool.stats().waiting, 1);
    advance(Duration::from_secs(1)).await;
    let err = assert_ready!(waiting.poll()).unwrap_err();
    let timed_out = err.downcast_ref::<TimedOut>().unwrap();
    assert_eq!((timed_out.name(), timed_out.after()), ("db", Duration::from_secs(1)));
    assert_eq!(pool.stats().waiting, 0);
    assert_eq!(pool.stats().timed_out, 1);
    drop(held);
    assert!(pool.acquire().await.is_ok());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn broken_resources_are_destroyed_on_recycle() {
    let conns = Conns::default();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pool = Pool::builder(conns.clone())
        .max_size(2)
        .on_event(move |e: &ResourceEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    drop(pool.acquire().await.unwrap());
    conns.broken.lock().unwrap().push(0);
    let c = pool.acquire().await.unwrap();
    assert_eq!(*c, 1);
    assert_eq!(*conns.destroyed.lock().unwrap(), vec![0]);
    let s = pool.stats();
    assert_eq!((s.total, s.created, s.destroyed), (1, 2, 1));
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ResourceEvent::Destroyed { reason: DestroyReason::Broken, total: 0 })));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_get_resources_in_order() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    let mut w1 = task::spawn(pool.acquire());
    let mut w2 = task::spawn(pool.acquire());
    assert_pending!(w1.poll());
    assert_pending!(w2.poll());
    assert_eq!(pool.stats().waiting, 2);
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
    assert_eq!(pool.stats().waiting, 1);
    drop(held);
    assert!(assert_ready!(w2.poll()).is_ok());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn create_errors_reach_the_caller_and_free_the_place() {
    let conns = Conns::default();
    conns.fail_create.store(1, Ordering::SeqCst);
    let pool = Pool::builder(conns).max_size(1).build().unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
    assert_eq!(pool.stats().total, 0);
    assert_eq!(pool.stats().in_use, 0);
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
    assert_eq!(pool.stats().available, 1);
    assert_eq!(*pool.acquire().await.unwrap(), 40);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn destroy_and_detach_take_the_resource_out() {
    let conns = Conns::default();
    let pool = Pool::builder(conns.clone()).max_size(2).build().unwrap();
    let a = pool.acquire().await.unwrap();
    Pooled::destroy(a).await;
    assert_eq!(*conns.destroyed.lock().unwrap(), vec![0]);
    let b = pool.acquire().await.unwrap();
    assert_eq!(Pooled::detach(b), Some(1));
    let s = pool.stats();
    assert_eq!((s.total, s.available, s.in_use), (0, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_refuses_and_destroys() {
    let conns = Conns::default();
    let pool = Pool::builder(conns.clone()).max_size(2).build().unwrap();
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
    assert_eq!(pool.stats().total, 0);
    assert!(pool.is_closed());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_resources_expire_down_to_min() {
    let conns = Conns::default();
    let pool = Pool::builder(conns.clone())
        .min_size(1)
        .max_size(3)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    pool.fill().await.unwrap();
    assert_eq!(pool.stats().total, 1);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    drop(a);
    drop(b);
    assert_eq!(pool.stats().available, 2);
    advance(Duration::from_secs(11)).await;
    let c = pool.acquire().await.unwrap();
    // The newest idle one expired and was destroyed; the last one is kept for `min_size`.
    assert_eq!(conns.destroyed.lock().unwrap().len(), 1);
    assert_eq!(pool.stats().total, 1);
    drop(c);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn closures_make_a_lifecycle() {
    let next = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let pool = Pool::builder(
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
    assert_eq!(Pool::builder(Conns::default()).max_size(0).build().unwrap_err().field(), "max_size");
    assert_eq!(
        Pool::builder(Conns::default()).min_size(5).max_size(2).build().unwrap_err().field(),
        "min_size"
    );
    assert_eq!(
        Pool::builder(Conns::default()).acquire_timeout(Duration::ZERO).build().unwrap_err().field(),
        "acquire_timeout"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn total_never_exceeds_max_under_contention() {
    let pool = pool(3);
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let g = pool.acquire().await.unwrap();
            assert!(pool.stats().total <= 3);
            tokio::time::sleep(Duration::from_millis(i % 4)).await;
            drop(g);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.total, s.in_use, s.waiting), (3, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancelling_an_acquire_mid_create_frees_the_place() {
    let pool = Pool::builder(lifecycle_fn(|| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::io::Error>(1u8)
    }))
    .max_size(1)
    .build()
    .unwrap();
    let mut creating = task::spawn(pool.acquire());
    assert_pending!(creating.poll());
    assert_eq!((pool.stats().total, pool.stats().in_use), (1, 1));
    drop(creating);
    let s = pool.stats();
    assert_eq!((s.total, s.in_use, s.destroyed), (0, 0, 0));
    let got = pool.acquire().await.unwrap();
    assert_eq!(*got, 1);
}
