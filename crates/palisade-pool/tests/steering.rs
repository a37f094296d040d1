#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 17.4: pools an operator can steer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_pool::scaling::{PoolLoad, ScalingPolicy};
use palisade_pool::{make_fn, Pool, PoolEvent, ScaleDownReason, ScaleUpReason};
use tokio::time::{sleep, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Members that work `work_ms` per job and fail odd jobs when `fail_odd`; every job served
/// is logged in order.
fn make(
    work_ms: u64,
    fail_odd: bool,
    log: Arc<Mutex<Vec<u32>>>,
) -> impl tower::Service<
    (),
    Response = impl tower::Service<u32, Response = u32, Error = std::io::Error, Future = impl Send> + Send,
    Error = std::io::Error,
    Future = impl Send,
> + Send
       + 'static {
    make_fn(move || {
        let log = log.clone();
        async move {
            Ok::<_, std::io::Error>(tower::service_fn(move |n: u32| {
                log.lock().unwrap().push(n);
                async move {
                    sleep(ms(work_ms)).await;
                    if fail_odd && n % 2 == 1 {
                        Err(std::io::Error::other("odd"))
                    } else {
                        Ok(n)
                    }
                }
            }))
        }
    })
}

/// A policy that never scales on its own.
struct Hold;

impl ScalingPolicy for Hold {
    fn scale_up(&mut self, _: &PoolLoad) -> Option<ScaleUpReason> {
        None
    }
    fn scale_down(&mut self, _: &PoolLoad) -> Option<ScaleDownReason> {
        None
    }
}

fn events() -> (Arc<Mutex<Vec<PoolEvent>>>, impl Fn(&PoolEvent) + Send + Sync + 'static) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    (log, move |e: &PoolEvent| l.lock().unwrap().push(e.clone()))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scale_to_under_load() {
    let (events, listener) = events();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(8)
        .scaling_policy(Hold)
        .on_event(listener)
        .build(make(1000, false, Arc::default()))
        .unwrap();
    let handle = pool.handle();
    sleep(ms(1)).await;
    assert_eq!(handle.snapshot().members.len(), 1);

    // Eight one-second jobs on one member would take eight seconds; scaled to four, two.
    let started = Instant::now();
    let batch = tokio::spawn({
        let pool = pool.clone();
        async move { pool.submit_batch(0..8).await }
    });
    sleep(ms(1)).await;
    assert_eq!(handle.snapshot().queued, 7);
    handle.scale_to(4);
    let results = batch.await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    // The resize came 1 ms in: the first job ran from 0, the others from 1 ms.
    assert_eq!(started.elapsed(), ms(2001));
    assert_eq!(handle.snapshot().members.len(), 4);
    let ups = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, PoolEvent::ScaledUp { reason: ScaleUpReason::Operator, .. }))
        .count();
    assert_eq!(ups, 3);

    // Scaling down while every member is busy: busy members leave when their call ends.
    let started = Instant::now();
    let batch = tokio::spawn({
        let pool = pool.clone();
        async move { pool.submit_batch(0..8).await }
    });
    sleep(ms(1)).await;
    assert_eq!(handle.snapshot().in_flight, 4);
    handle.scale_down(2);
    sleep(ms(1)).await;
    assert_eq!(handle.snapshot().members.len(), 4, "no member retired with a call in flight");
    assert!(batch.await.unwrap().iter().all(Result::is_ok));
    // 4 jobs on 4 members (1 s), then 4 on 2 members (2 s).
    assert_eq!(started.elapsed(), ms(3000));
    assert_eq!(handle.snapshot().members.len(), 2);
    let downs = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, PoolEvent::ScaledDown { reason: ScaleDownReason::Operator, .. }))
        .count();
    assert_eq!(downs, 2);

    // Clamped to min_size..=max_size.
    handle.scale_to(0);
    sleep(ms(1)).await;
    assert_eq!(handle.snapshot().members.len(), 1);
    handle.scale_up(usize::MAX);
    sleep(ms(1)).await;
    assert_eq!(handle.snapshot().members.len(), 8);
    handle.scale_down(usize::MAX);
    sleep(ms(1)).await;
    assert_eq!(handle.snapshot().members.len(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_default_policy_takes_over_after_scale_to() {
    let pool = Pool::builder()
        .min_size(1)
        .max_size(8)
        .scale_down(0.2, Duration::from_secs(5))
        .build(make(10, false, Arc::default()))
        .unwrap();
    let handle = pool.handle();
    handle.scale_to(6);
    sleep(ms(5)).await;
    assert_eq!(handle.snapshot().members.len(), 6);
    // Idle: the utilisation policy retires one member per quiet period of 5 s.
    sleep(Duration::from_secs(6) + ms(500)).await;
    assert_eq!(handle.snapshot().members.len(), 5);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(handle.snapshot().members.len(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_custom_policy_decides_and_a_panicking_one_is_contained() {
    struct Counting(Arc<AtomicUsize>, bool);
    impl ScalingPolicy for Counting {
        fn scale_up(&mut self, load: &PoolLoad) -> Option<ScaleUpReason> {
            self.0.fetch_add(1, Ordering::SeqCst);
            assert!(!self.1, "policy bug");
            (load.queued > 0).then_some(ScaleUpReason::Policy)
        }
        fn scale_down(&mut self, load: &PoolLoad) -> Option<ScaleDownReason> {
            assert!(!self.1, "policy bug");
            (load.in_flight == 0).then_some(ScaleDownReason::Policy)
        }
    }
    let asked = Arc::new(AtomicUsize::new(0));
    let (events, listener) = events();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(3)
        .scaling_policy(Counting(asked.clone(), false))
        .on_event(listener)
        .build(make(100, false, Arc::default()))
        .unwrap();
    assert!(pool.submit_batch(0..6).await.iter().all(Result::is_ok));
    assert!(asked.load(Ordering::SeqCst) > 0);
    assert_eq!(pool.snapshot().members.len(), 3);
    sleep(Duration::from_secs(10)).await;
    assert_eq!(pool.snapshot().members.len(), 1);
    let e = events.lock().unwrap().clone();
    assert!(e.iter().any(|e| matches!(e, PoolEvent::ScaledUp { reason: ScaleUpReason::Policy, .. })));
    assert!(e.iter().any(|e| matches!(e, PoolEvent::ScaledDown { reason: ScaleDownReason::Policy, .. })));

    let panicking = Pool::builder()
        .min_size(1)
        .max_size(3)
        .scaling_policy(Counting(Arc::default(), true))
        .build(make(100, false, Arc::default()))
        .unwrap();
    assert!(panicking.submit_batch(0..4).await.iter().all(Result::is_ok));
    assert_eq!(panicking.snapshot().members.len(), 1, "a panicking policy changes nothing");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn snapshot_keeps_per_member_load_and_completed_apart_from_failed() {
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .member_concurrency(4)
        .evict_after_failures(1000)
        .build(make(100, true, Arc::default()))
        .unwrap();
    sleep(ms(1)).await;
    let running = tokio::spawn({
        let pool = pool.clone();
        async move { pool.submit_batch(0..3).await }
    });
    sleep(ms(1)).await;
    let snap = pool.snapshot();
    let loads: f64 = snap.members.iter().map(palisade_pool::MemberSnapshot::load).sum();
    assert!((loads - 0.75).abs() < 1e-9, "3 calls over two members of 4: {snap:?}");
    assert!(snap.members.iter().all(|m| m.capacity == 4));
    running.await.unwrap();
    let results = pool.submit_batch(3..10).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 4);
    let snap = pool.snapshot();
    assert_eq!((snap.completed, snap.failed), (5, 5));
    assert_eq!(snap.members.iter().map(|m| m.failed).sum::<u64>(), 5);
    assert_eq!(snap.members.iter().map(|m| m.served).sum::<u64>(), 10);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_job_reports_its_member_and_duration() {
    let (events, listener) = events();
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .evict_after_failures(1000)
        .on_event(listener)
        .build(make(300, true, Arc::default()))
        .unwrap();
    sleep(ms(1)).await;
    let results = pool.submit_batch(0..4).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    let completions: Vec<(u64, Duration, bool)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            PoolEvent::Completed { member, duration, failed } => Some((*member, *duration, *failed)),
            _ => None,
        })
        .collect();
    assert_eq!(completions.len(), 4);
    assert!(completions.iter().all(|c| c.1 == ms(300)));
    assert_eq!(completions.iter().filter(|c| c.2).count(), 2);
    let mut members: Vec<u64> = completions.iter().map(|c| c.0).collect();
    members.sort_unstable();
    assert_eq!(members, [0, 0, 1, 1]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_batch_with_a_priority_overtakes_waiting_requests() {
    let served = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::builder().min_size(1).max_size(1).build(make(100, false, served.clone())).unwrap();
    sleep(ms(1)).await;
    let low = tokio::spawn({
        let pool = pool.clone();
        async move { pool.submit_batch([0, 1, 2, 3]).await }
    });
    sleep(ms(1)).await;
    let urgent = tokio::spawn({
        let pool = pool.clone();
        async move { pool.submit_batch_with_priority([100, 101], 9).await }
    });
    let later = tokio::spawn({
        let pool = pool.clone();
        async move {
            sleep(ms(1)).await;
            pool.submit_batch([4]).await
        }
    });
    assert!(urgent.await.unwrap().iter().all(Result::is_ok));
    assert!(low.await.unwrap().iter().all(Result::is_ok));
    assert!(later.await.unwrap().iter().all(Result::is_ok));
    // Job 0 was running; the urgent batch goes next; the rest keep their order.
    assert_eq!(*served.lock().unwrap(), [0, 100, 101, 1, 2, 3, 4]);
}
