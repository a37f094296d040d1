#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use palisade_core::rejection::{find, Closed, Overloaded};
use palisade_core::when_full::WhenFull;
use palisade_pool::error::Panicked;
use palisade_pool::{EvictReason, Pool, PoolEvent, ScaleDownReason, ScaleUpReason, Strategy};
use support::{settle, Behaviour, Events, Factory, Job};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Service, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn call(svc: &Pool<Job, (u64, u32)>, job: Job) -> Result<(u64, u32), palisade_core::BoxError> {
    svc.clone().oneshot(job).await
}

fn spawn_call(
    svc: &Pool<Job, (u64, u32)>,
    job: Job,
) -> tokio::task::JoinHandle<Result<(u64, u32), palisade_core::BoxError>> {
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(job).await })
}

// === dispatch strategies ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn round_robin_takes_members_in_turn() {
    let f = Factory::new();
    let pool = Pool::builder()
        .min_size(3)
        .max_size(3)
        .member_concurrency(10)
        .strategy(Strategy::RoundRobin)
        .build(f.make())
        .unwrap();
    settle().await;
    assert_eq!(pool.snapshot().members.len(), 3);
    for n in 0..9 {
        call(&pool, Job::new(n)).await.unwrap();
    }
    assert_eq!(f.served_by(), vec![0, 1, 2, 0, 1, 2, 0, 1, 2]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn least_in_flight_avoids_the_busy_member() {
    let f = Factory::new();
    let pool = Pool::builder()
        .min_size(3)
        .max_size(3)
        .member_concurrency(10)
        .strategy(Strategy::LeastInFlight)
        .build(f.make())
        .unwrap();
    settle().await;
    let long = spawn_call(&pool, Job::new(100).work(1_000));
    settle().await;
    let busy = f.served_by()[0];
    for n in 0..6 {
        call(&pool, Job::new(n)).await.unwrap();
    }
    let served = f.served_by();
    assert!(served[1..].iter().all(|&m| m != busy), "{served:?}");
    // Long jobs spread evenly.
    let longs: Vec<_> = (0..5).map(|n| spawn_call(&pool, Job::new(200 + n).work(1_000))).collect();
    settle().await;
    let mut in_flight: Vec<_> = pool.snapshot().members.iter().map(|m| m.in_flight).collect();
    in_flight.sort_unstable();
    assert_eq!(in_flight, vec![2, 2, 2]);
    advance(ms(1_000)).await;
    long.await.unwrap().unwrap();
    for l in longs {
        l.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn power_of_two_choices_picks_the_less_loaded() {
    let f = Factory::new();
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .member_concurrency(10)
        .strategy(Strategy::PowerOfTwoChoices)
        .seed(7)
        .build(f.make())
        .unwrap();
    settle().await;
    let _long = spawn_call(&pool, Job::new(100).work(10_000));
    settle().await;
    let busy = f.served_by()[0];
    for n in 0..20 {
        call(&pool, Job::new(n)).await.unwrap();
    }
    assert!(f.served_by()[1..].iter().all(|&m| m != busy));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn peak_ewma_avoids_the_slow_member() {
    let f = Factory::new();
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .member_concurrency(10)
        .strategy(Strategy::PeakEwma)
        .peak_ewma(ms(30), Duration::from_secs(10))
        .seed(3)
        .build(f.make())
        .unwrap();
    settle().await;
    // One slow answer (500 ms) marks its member slow.
    call(&pool, Job::new(100).work(500)).await.unwrap();
    let slow = f.served_by()[0];
    for n in 0..20 {
        call(&pool, Job::new(n).work(1)).await.unwrap();
    }
    assert!(f.served_by()[1..].iter().all(|&m| m != slow), "{:?}", f.served_by());
}

// === queue ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn full_queue_rejects_with_overloaded() {
    let f = Factory::new();
    let pool = Pool::builder().min_size(1).max_size(1).max_queue(2).build(f.make()).unwrap();
    settle().await;
    let running = spawn_call(&pool, Job::new(0).work(100));
    settle().await;
    let queued: Vec<_> = (1..3).map(|n| spawn_call(&pool, Job::new(n).work(100))).collect();
    settle().await;
    assert_eq!(pool.snapshot().queued, 2);
    let err = call(&pool, Job::new(3)).await.unwrap_err();
    assert!(find::<Overloaded>(err.as_ref()).is_some(), "{err}");
    assert_eq!(pool.snapshot().rejected, 1);
    advance(ms(300)).await;
    running.await.unwrap().unwrap();
    for q in queued {
        q.await.unwrap().unwrap();
    }
    assert_eq!(pool.snapshot().queued, 0);
    assert_eq!(f.jobs(), vec![0, 1, 2]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn priority_orders_the_queue() {
    let f = Factory::new();
    let pool =
        Pool::builder().min_size(1).max_size(1).priority(|j: &Job| j.priority).build(f.make()).unwrap();
    settle().await;
    let mut calls = vec![spawn_call(&pool, Job::new(0).work(10))];
    settle().await;
    for (n, p) in [(1, 1), (2, 5), (3, 3), (4, 5), (5, 0)] {
        calls.push(spawn_call(&pool, Job::new(n).priority(p).work(10)));
        settle().await;
    }
    advance(ms(100)).await;
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(f.jobs(), vec![0, 2, 4, 3, 1, 5]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fifo_without_priority() {
    let f = Factory::new();
    let pool = Pool::builder().min_size(1).max_size(1).build(f.make()).unwrap();
    settle().await;
    let mut calls = Vec::new();
    for n in 0..5 {
        calls.push(spawn_call(&pool, Job::new(n).priority(n as u8).work(10)));
        settle().await;
    }
    advance(ms(100)).await;
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(f.jobs(), vec![0, 1, 2, 3, 4]);
}

// === the tower five ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_reserves_a_place_without_calling() {
    let f = Factory::new();
    let pool = Pool::builder().max_size(1).max_queue(1).build(f.make()).unwrap();
    settle().await;
    let mut a = pool.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| a.poll_ready(cx)));
    // The only place is reserved by `a`: another clone is shed (Reject) ...
    let err = call(&pool, Job::new(1)).await.unwrap_err();
    assert!(err.is::<Overloaded>());
    // ... or waits (Wait).
    let b = Pool::builder()
        .max_size(1)
        .max_queue(1)
        .when_full(WhenFull::wait(Duration::MAX))
        .build(Factory::new().make())
        .unwrap();
    let mut b1 = b.clone();
    let mut b2 = b.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| b1.poll_ready(cx)));
    let mut waiting = task::spawn(b2.ready());
    assert_pending!(waiting.poll());
    // Spending the reservation works.
    assert_eq!(a.call(Job::new(7)).await.unwrap().1, 7);
}

/// Own case (as the bulkhead's): a service refused by a full queue and polled ready again
/// once a place is free takes that place instead of serving the stale refusal.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refusal_is_not_served_once_a_place_is_free() {
    let pool = Pool::builder().max_size(1).max_queue(1).build(Factory::new().make()).unwrap();
    settle().await;
    let mut holder = pool.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| holder.poll_ready(cx)));
    let mut svc = pool.clone();
    let mut t = task::spawn(());
    assert_ready_ok!(t.enter(|cx, _| svc.poll_ready(cx)));
    drop(holder);
    assert_ready_ok!(t.enter(|cx, _| svc.poll_ready(cx)));
    assert_eq!(svc.call(Job::new(3)).await.unwrap().1, 3);
    assert_eq!(pool.snapshot().rejected, 0);
}

// === WhenFull::wait(d): a bounded wait ===

/// A full queue holds `poll_ready` for at most the bound; then `poll_ready` is ready and
/// `call` fails with `Overloaded` (counted as rejected), and the next `poll_ready` waits
/// again with a fresh bound.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_bounded_wait_refuses_when_its_bound_passes() {
    let pool = Pool::builder()
        .name("workers")
        .max_size(1)
        .max_queue(1)
        .when_full(WhenFull::wait(ms(100)))
        .build(Factory::new().make())
        .unwrap();
    let mut holder = pool.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| holder.poll_ready(cx)));
    let mut waiter = pool.clone();
    let mut t = task::spawn(());
    assert_pending!(t.enter(|cx, _| waiter.poll_ready(cx)));
    advance(ms(99)).await;
    assert_pending!(t.enter(|cx, _| waiter.poll_ready(cx)));
    advance(ms(1)).await;
    assert!(t.is_woken());
    assert_ready_ok!(t.enter(|cx, _| waiter.poll_ready(cx)));
    let err = waiter.call(Job::new(1)).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Overloaded>().unwrap().name(), "workers");
    assert_eq!(pool.snapshot().rejected, 1);
    // A fresh wait, with a fresh bound.
    assert_pending!(t.enter(|cx, _| waiter.poll_ready(cx)));
    advance(ms(50)).await;
    assert_pending!(t.enter(|cx, _| waiter.poll_ready(cx)));
    // A place freed within the bound is taken: no refusal.
    drop(holder);
    assert!(t.is_woken());
    assert_ready_ok!(t.enter(|cx, _| waiter.poll_ready(cx)));
    advance(ms(100)).await;
    assert_eq!(waiter.call(Job::new(2)).await.unwrap().1, 2);
    assert_eq!(pool.snapshot().rejected, 1);
}

/// A service whose bounded wait ran out leaves the queue's wait list: a place freed
/// afterwards goes to the next waiter, not to the service that gave up.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_wait_that_ran_out_holds_no_place() {
    let pool = Pool::builder()
        .max_size(1)
        .max_queue(1)
        .when_full(WhenFull::wait(ms(100)))
        .build(Factory::new().make())
        .unwrap();
    let mut holder = pool.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| holder.poll_ready(cx)));
    let mut gave_up = pool.clone();
    let mut t = task::spawn(());
    assert_pending!(t.enter(|cx, _| gave_up.poll_ready(cx)));
    advance(ms(100)).await;
    assert_ready_ok!(t.enter(|cx, _| gave_up.poll_ready(cx)));
    let mut next = pool.clone();
    let mut waiting = task::spawn(next.ready());
    assert_pending!(waiting.poll());
    drop(holder);
    assert!(waiting.is_woken());
    assert_ready_ok!(waiting.poll());
}

/// `WhenFull::wait(Duration::MAX)` (and any bound past palisade's far future) waits without
/// bound, as the old `WhenFull::Wait`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_bound_waits_without_bound() {
    for bound in [Duration::MAX, palisade_core::time::FAR_FUTURE] {
        let pool = Pool::builder()
            .max_size(1)
            .max_queue(1)
            .when_full(WhenFull::wait(bound))
            .build(Factory::new().make())
            .unwrap();
        let mut holder = pool.clone();
        assert_ready_ok!(task::spawn(()).enter(|cx, _| holder.poll_ready(cx)));
        let mut waiter = pool.clone();
        let mut waiting = task::spawn(waiter.ready());
        assert_pending!(waiting.poll());
        advance(Duration::from_secs(86_400 * 365 * 40)).await;
        assert_pending!(waiting.poll());
        drop(holder);
        assert_ready_ok!(waiting.poll());
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_service_frees_its_reservation() {
    let pool = Pool::builder()
        .max_size(1)
        .max_queue(1)
        .when_full(WhenFull::wait(Duration::MAX))
        .build(Factory::new().make())
        .unwrap();
    let mut a = pool.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| a.poll_ready(cx)));
    let mut b = pool.clone();
    let mut waiting = task::spawn(b.ready());
    assert_pending!(waiting.poll());
    drop(a);
    assert!(waiting.is_woken());
    assert_ready_ok!(waiting.poll());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_queued_response_future_frees_its_place() {
    let f = Factory::new();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .max_queue(1)
        .when_full(WhenFull::wait(Duration::MAX))
        .build(f.make())
        .unwrap();
    settle().await;
    let running = spawn_call(&pool, Job::new(0).work(1_000));
    settle().await;
    let mut a = pool.clone();
    let queued = a.ready().await.unwrap().call(Job::new(1));
    settle().await;
    assert_eq!(pool.snapshot().queued, 1);
    let mut b = pool.clone();
    let mut waiting = task::spawn(b.ready());
    assert_pending!(waiting.poll());
    drop(queued);
    settle().await;
    assert!(waiting.is_woken());
    assert_ready_ok!(waiting.poll());
    assert_eq!(pool.snapshot().queued, 0);
    advance(ms(1_000)).await;
    running.await.unwrap().unwrap();
    // The cancelled job never reached a member.
    assert_eq!(f.jobs(), vec![0]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_running_response_future_frees_the_member() {
    let f = Factory::new();
    let pool = Pool::builder().min_size(1).max_size(1).build(f.make()).unwrap();
    settle().await;
    let mut svc = pool.clone();
    let mut running = task::spawn(svc.ready().await.unwrap().call(Job::new(0).work(1_000)));
    assert_pending!(running.poll());
    settle().await;
    assert_pending!(running.poll());
    assert_eq!(pool.snapshot().in_flight, 1);
    drop(running);
    assert_eq!(pool.snapshot().in_flight, 0);
    assert_eq!(call(&pool, Job::new(1)).await.unwrap(), (0, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_frees_the_member() {
    let f = Factory::new();
    let pool = Pool::builder().min_size(1).max_size(1).build(f.make()).unwrap();
    settle().await;
    assert!(call(&pool, Job::new(0).failing()).await.is_err());
    assert_eq!(pool.snapshot().in_flight, 0);
    assert_eq!(call(&pool, Job::new(1)).await.unwrap(), (0, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_woken_in_order() {
    let f = Factory::new();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .max_queue(1)
        .when_full(WhenFull::wait(Duration::MAX))
        .build(f.make())
        .unwrap();
    let mut holder = pool.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| holder.poll_ready(cx)));
    let mut s1 = pool.clone();
    let mut s2 = pool.clone();
    let mut w1 = task::spawn(s1.ready());
    let mut w2 = task::spawn(s2.ready());
    assert_pending!(w1.poll());
    assert_pending!(w2.poll());
    drop(holder);
    assert!(w1.is_woken());
    assert!(!w2.is_woken());
    assert_ready_ok!(w1.poll());
    assert_pending!(w2.poll());
}

// === scaling ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scales_up_under_load_and_down_when_quiet() {
    let f = Factory::new();
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(3)
        .scale_down(0.2, Duration::from_secs(5))
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    assert_eq!(pool.snapshot().members.len(), 1);
    let calls: Vec<_> = (0..12).map(|n| spawn_call(&pool, Job::new(n).work(100))).collect();
    settle().await;
    let snap = pool.snapshot();
    assert_eq!(snap.members.len(), 3, "{snap:?}");
    assert_eq!(snap.made, 3);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let mut max_seen = 0;
    for _ in 0..30 {
        advance(Duration::from_secs(1)).await;
        settle().await;
        let n = pool.snapshot().members.len();
        max_seen = max_seen.max(n);
        assert!((1..=3).contains(&n));
    }
    assert_eq!(pool.snapshot().members.len(), 1);
    assert_eq!(pool.snapshot().retired, 2);
    assert_eq!(events.count(|e| matches!(e, PoolEvent::ScaledUp { reason: ScaleUpReason::Minimum, .. })), 1);
    assert_eq!(events.count(|e| matches!(e, PoolEvent::ScaledUp { .. })), 3);
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::ScaledDown { reason: ScaleDownReason::LowUtilisation, .. })),
        2
    );
    assert!(max_seen <= 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_members_are_retired_down_to_min() {
    let f = Factory::new();
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(2)
        .max_size(4)
        .idle_timeout(Duration::from_secs(3))
        .scale_down(0.1, Duration::from_secs(3600))
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    let calls: Vec<_> = (0..8).map(|n| spawn_call(&pool, Job::new(n).work(100))).collect();
    settle().await;
    assert_eq!(pool.snapshot().members.len(), 4);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    advance(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(pool.snapshot().members.len(), 4);
    for _ in 0..5 {
        advance(Duration::from_secs(1)).await;
        settle().await;
    }
    assert_eq!(pool.snapshot().members.len(), 2);
    assert_eq!(events.count(|e| matches!(e, PoolEvent::ScaledDown { reason: ScaleDownReason::Idle, .. })), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_factory_backs_off() {
    let f = Factory::new().fail_first(3);
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(ms(100), Duration::from_secs(10))
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    let start = Instant::now();
    settle().await;
    let answer = spawn_call(&pool, Job::new(1));
    for _ in 0..10 {
        advance(ms(100)).await;
        settle().await;
    }
    assert_eq!(answer.await.unwrap().unwrap(), (0, 1));
    let attempts: Vec<_> = f.attempts.lock().unwrap().iter().map(|t| *t - start).collect();
    assert_eq!(attempts, vec![ms(0), ms(100), ms(300), ms(700)]);
    let retries: Vec<_> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            PoolEvent::MakeFailed { attempt, retry_in, .. } => Some((attempt, retry_in)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, vec![(1, ms(100)), (2, ms(200)), (3, ms(400))]);
    assert_eq!(pool.snapshot().make_failures, 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_making_never_blocks_dispatch() {
    let f = Factory::new().delays(vec![ms(0), Duration::from_secs(60)]);
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .member_concurrency(4)
        .make_timeout(Duration::from_secs(120))
        .build(f.make())
        .unwrap();
    settle().await;
    for n in 0..5 {
        assert_eq!(call(&pool, Job::new(n)).await.unwrap(), (0, n));
    }
    assert_eq!(pool.snapshot().members.len(), 1);
    advance(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(pool.snapshot().members.len(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn make_timeout_counts_as_a_failure() {
    let f = Factory::new().delays(vec![Duration::from_secs(60)]);
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_timeout(Duration::from_secs(1))
        .make_backoff(ms(100), ms(100))
        .build(f.make())
        .unwrap();
    let answer = spawn_call(&pool, Job::new(3));
    for _ in 0..20 {
        advance(ms(100)).await;
        settle().await;
    }
    assert_eq!(answer.await.unwrap().unwrap(), (0, 3));
    assert_eq!(pool.snapshot().make_failures, 1);
}

// === health ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failing_member_is_evicted_and_replaced_without_losing_requests() {
    let f = Factory::new().behave(0, Behaviour { fail_calls: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .strategy(Strategy::RoundRobin)
        .evict_after_failures(3)
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    let mut answers = HashMap::new();
    for n in 0..20 {
        let res = call(&pool, Job::new(n)).await;
        assert!(answers.insert(n, res.is_ok()).is_none());
    }
    assert_eq!(answers.len(), 20);
    let failed = answers.values().filter(|ok| !**ok).count();
    assert_eq!(failed, 3);
    // Every request reached exactly one member once.
    let mut jobs = f.jobs();
    jobs.sort_unstable();
    assert_eq!(jobs, (0..20).collect::<Vec<_>>());
    let snap = pool.snapshot();
    assert_eq!(snap.evicted, 1);
    assert_eq!(snap.made, 3);
    assert!(snap.members.iter().all(|m| m.id != 0));
    assert_eq!(snap.members.len(), 2);
    assert_eq!(
        events.count(|e| matches!(
            e,
            PoolEvent::Evicted { member: 0, reason: EvictReason::ConsecutiveFailures(3), .. }
        )),
        1
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn member_whose_poll_ready_fails_is_evicted() {
    let f = Factory::new().behave(0, Behaviour { ready_error_after: Some(2), ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder().min_size(1).max_size(1).on_event(events.listener()).build(f.make()).unwrap();
    settle().await;
    for n in 0..6 {
        call(&pool, Job::new(n)).await.unwrap();
    }
    assert_eq!(f.served_by(), vec![0, 0, 1, 1, 1, 1]);
    assert_eq!(pool.snapshot().evicted, 1);
    assert_eq!(events.count(|e| matches!(e, PoolEvent::Evicted { reason: EvictReason::NotReady(_), .. })), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn members_broken_from_birth_are_replaced_with_backoff() {
    let broken = Behaviour { ready_error_after: Some(0), ..Behaviour::default() };
    let mut f = Factory::new();
    for id in 0..100 {
        f = f.behave(id, broken);
    }
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(ms(100), Duration::from_secs(10))
        .build(f.make())
        .unwrap();
    let start = Instant::now();
    let _waiting = spawn_call(&pool, Job::new(0));
    settle().await;
    for _ in 0..16 {
        advance(ms(100)).await;
        settle().await;
    }
    // Replacements after 100, 200, 400, 800 ms: five members in 1.6 s, not thousands.
    let attempts: Vec<_> = f.attempts.lock().unwrap().iter().map(|t| *t - start).collect();
    assert_eq!(attempts, vec![ms(0), ms(100), ms(300), ms(700), ms(1_500)]);
    assert_eq!(pool.snapshot().evicted, 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn health_check_evicts_a_sick_member() {
    let f = Factory::new().behave(1, Behaviour { fail_health: true, ..Behaviour::default() });
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .health_check(Duration::from_secs(5), || Job { health: true, ..Job::default() })
        .build(f.make())
        .unwrap();
    settle().await;
    assert_eq!(pool.snapshot().evicted, 0);
    for _ in 0..6 {
        advance(Duration::from_secs(1)).await;
        settle().await;
    }
    let snap = pool.snapshot();
    assert_eq!(snap.evicted, 1);
    let ids: Vec<_> = snap.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![0, 2]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_flight_calls_on_an_evicted_member_finish() {
    let f = Factory::new();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .member_concurrency(4)
        .evict_after_failures(1)
        .build(f.make())
        .unwrap();
    settle().await;
    let slow = spawn_call(&pool, Job::new(0).work(1_000));
    settle().await;
    assert!(call(&pool, Job::new(1).failing()).await.is_err());
    settle().await;
    assert_eq!(pool.snapshot().evicted, 1);
    advance(ms(1_000)).await;
    assert_eq!(slow.await.unwrap().unwrap(), (0, 0));
    assert_eq!(pool.snapshot().in_flight, 0);
    assert_eq!(call(&pool, Job::new(2)).await.unwrap(), (1, 2));
}

// === shutdown, batches ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_drains_queued_and_in_flight_work() {
    let f = Factory::new();
    let events = Events::default();
    let pool = Pool::builder().min_size(1).max_size(1).on_event(events.listener()).build(f.make()).unwrap();
    settle().await;
    let calls: Vec<_> = (0..3).map(|n| spawn_call(&pool, Job::new(n).work(100))).collect();
    settle().await;
    let report = pool.handle().shutdown(Duration::from_secs(1)).await;
    assert!(report.drained);
    assert_eq!(report.abandoned, 0);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let err = call(&pool, Job::new(9)).await.unwrap_err();
    assert!(err.is::<Closed>(), "{err}");
    assert!(pool.snapshot().closed);
    assert!(pool.snapshot().members.is_empty());
    assert_eq!(events.count(|e| matches!(e, PoolEvent::ShutdownFinished { drained: true })), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_deadline_answers_what_is_left() {
    let f = Factory::new();
    let pool = Pool::builder().min_size(1).max_size(1).build(f.make()).unwrap();
    settle().await;
    let calls: Vec<_> = (0..3).map(|n| spawn_call(&pool, Job::new(n).work(1_000))).collect();
    settle().await;
    let report = pool.handle().shutdown(ms(1_500)).await;
    assert!(!report.drained);
    assert_eq!(report.abandoned, 1);
    assert_eq!(report.in_flight, 1);
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }
    assert!(results[0].is_ok());
    assert!(results[1].is_ok(), "in-flight calls belong to their callers and finish");
    assert!(results[2].as_ref().unwrap_err().is::<Closed>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn submit_batch_keeps_input_order() {
    let f = Factory::new();
    let pool = Pool::builder().min_size(1).max_size(3).max_queue(2).build(f.make()).unwrap();
    let jobs: Vec<_> = (0..10).map(|n| Job::new(n).work(u64::from(10 - n) * 10)).collect();
    let results = pool.submit_batch(jobs).await;
    let ns: Vec<_> = results.into_iter().map(|r| r.unwrap().1).collect();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_every_handle_stops_the_worker() {
    let f = Factory::new();
    let pool = Pool::builder().min_size(1).max_size(1).build(f.make()).unwrap();
    let handle = pool.handle();
    settle().await;
    let weak = std::sync::Arc::downgrade(&f.log);
    drop(pool);
    drop(handle);
    settle().await;
    // The worker (and its members) are gone; only the factory's own references remain.
    drop(f);
    assert!(weak.upgrade().is_none());
}

// === config ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn invalid_settings_are_refused() {
    let f = Factory::new();
    let err = Pool::<Job, ()>::builder().min_size(3).max_size(2).build(f.make()).unwrap_err();
    assert_eq!(err.field(), "min_size");
    let err = Pool::<Job, ()>::builder().max_queue(0).build(f.make()).unwrap_err();
    assert_eq!(err.field(), "max_queue");
    let err = Pool::<Job, ()>::builder().member_concurrency(0).build(f.make()).unwrap_err();
    assert_eq!(err.field(), "member_concurrency");
    let err = Pool::<Job, ()>::builder().scale_up_utilisation(1.5).build(f.make()).unwrap_err();
    assert_eq!(err.field(), "scale_up_utilisation");
    let err = Pool::<Job, ()>::builder().scale_down(0.9, Duration::from_secs(1)).build(f.make()).unwrap_err();
    assert_eq!(err.field(), "scale_down_utilisation");
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Pool::<Job, ()>::builder().build(Factory::new().make()).unwrap_err();
    assert_eq!(err.field(), "runtime");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn call_without_poll_ready_does_not_panic() {
    let pool = Pool::builder().min_size(1).max_size(1).build(Factory::new().make()).unwrap();
    let mut svc = pool.clone();
    assert_eq!(svc.call(Job::new(4)).await.unwrap(), (0, 4));
    let mut t = task::spawn(());
    let _ = assert_ready!(t.enter(|cx, _| svc.poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scales_to_zero_and_back() {
    let f = Factory::new();
    let pool =
        Pool::builder().min_size(0).max_size(2).idle_timeout(Duration::from_secs(1)).build(f.make()).unwrap();
    settle().await;
    assert_eq!(pool.snapshot().members.len(), 0);
    assert_eq!(call(&pool, Job::new(1)).await.unwrap(), (0, 1));
    for _ in 0..3 {
        advance(Duration::from_secs(1)).await;
        settle().await;
    }
    assert_eq!(pool.snapshot().members.len(), 0);
    // The first call made member 0, and member 1 joined as member 0 was fully busy; both
    // were retired, so a fresh member 2 serves the next call.
    assert_eq!(pool.snapshot().retired, 2);
    assert_eq!(call(&pool, Job::new(2)).await.unwrap(), (2, 2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn handle_listeners_see_events() {
    let f = Factory::new().fail_first(1);
    let pool = Pool::builder().min_size(1).max_size(1).build(f.make()).unwrap();
    let events = Events::default();
    pool.handle().on_event(events.listener());
    settle().await;
    advance(ms(100)).await;
    settle().await;
    let kinds: Vec<_> = events.all().iter().map(|e| palisade_core::event::Event::kind(e)).collect();
    assert_eq!(kinds, vec!["make_failed", "scaled_up"]);
    assert_eq!(pool.handle().name(), "pool");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_makes_a_member_for_requests_still_waiting() {
    let f = Factory::new().delays(vec![ms(200)]);
    let pool = Pool::builder().min_size(0).max_size(1).build(f.make()).unwrap();
    let waiting = spawn_call(&pool, Job::new(5));
    settle().await;
    assert_eq!(pool.snapshot().queued, 1);
    let report = pool.handle().shutdown(Duration::from_secs(1)).await;
    assert!(report.drained);
    assert_eq!(waiting.await.unwrap().unwrap(), (0, 5));
}

// === nothing waits forever (issue 15, kind 4) ===

/// Makes members that answer every `u32` with itself, at once.
macro_rules! echo_make {
    () => {
        palisade_pool::make_fn(|| {
            std::future::ready(Ok::<_, palisade_core::BoxError>(tower::service_fn(|x: u32| {
                std::future::ready(Ok::<_, palisade_core::BoxError>(x))
            })))
        })
    };
}

/// The given input: one always-ready, healthy member with a 1 s health check; a request
/// landing on the check tick used to wait forever (the check spent the member's readiness
/// and no wake-up was registered).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_on_a_health_check_tick_is_answered() {
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .health_check(Duration::from_secs(1), || 0u32)
        .build(echo_make!())
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answer = tokio::time::timeout(Duration::from_secs(3600), pool.clone().oneshot(7)).await;
    assert_eq!(answer.expect("the request was never answered").unwrap(), 7);
}

/// Requests at many offsets around check ticks, several members, more than one call per
/// member: every one is answered without the clock moving on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn requests_around_health_check_ticks_are_answered() {
    for (members, concurrency) in [(1, 1), (2, 1), (1, 2), (3, 2)] {
        let pool = Pool::builder()
            .min_size(members)
            .max_size(members)
            .member_concurrency(concurrency)
            .health_check(ms(250), || 0u32)
            .housekeeping_interval(ms(50))
            .build(echo_make!())
            .unwrap();
        for step in 0..40u32 {
            tokio::time::sleep(ms(u64::from(step % 7) * 25)).await;
            let before = Instant::now();
            let calls = (0..3).map(|k| pool.clone().oneshot(step * 10 + k));
            let answers =
                tokio::time::timeout(Duration::from_secs(3600), futures_util::future::join_all(calls))
                    .await
                    .expect("a request was never answered");
            assert_eq!(
                answers.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
                vec![step * 10, step * 10 + 1, step * 10 + 2]
            );
            assert_eq!(Instant::now(), before, "answering needed the clock to move");
        }
    }
}

// === pools keep their promises (issue 15, kind 5) ===

/// The given input: a member evicted and replaced at the pool's minimum is a replacement.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_member_replaced_at_the_minimum_is_reported_as_a_replacement() {
    let f = Factory::new().behave(0, Behaviour { fail_calls: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .evict_after_failures(1)
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    assert!(call(&pool, Job::new(0)).await.is_err());
    assert_eq!(call(&pool, Job::new(1)).await.unwrap(), (1, 1));
    let reasons: Vec<_> = events
        .all()
        .iter()
        .filter_map(|e| match e {
            PoolEvent::ScaledUp { member, reason, .. } => Some((*member, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![(0, ScaleUpReason::Minimum), (1, ScaleUpReason::Replacement)]);
}

/// Own case: the same above the minimum (two members, one evicted).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_replacement_is_reported_as_one() {
    let f = Factory::new().behave(1, Behaviour { fail_calls: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(2)
        .max_size(3)
        .strategy(Strategy::RoundRobin)
        .evict_after_failures(1)
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    for n in 0..4 {
        let _ = call(&pool, Job::new(n)).await;
    }
    settle().await;
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::ScaledUp { reason: ScaleUpReason::Replacement, .. })),
        1
    );
    assert_eq!(events.count(|e| matches!(e, PoolEvent::ScaledUp { reason: ScaleUpReason::Minimum, .. })), 2);
}

// === a panic in user code never takes the pool down (issue 15, kind 3) ===

fn panicked_at(err: &palisade_core::BoxError) -> &'static str {
    let panicked = err.downcast_ref::<Panicked>().unwrap_or_else(|| panic!("not a Panicked error: {err}"));
    panicked.site().expect("the site of the panic")
}

fn evicted_for_panic(events: &Events) -> usize {
    events.count(|e| matches!(e, PoolEvent::Evicted { reason: EvictReason::Panicked(_), .. }))
}

/// The given input: a member panicking in `call` used to kill the worker (every later
/// request got `Closed`). Now only that request fails, with `Panicked`, and the member is
/// replaced.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_member_panicking_in_call_fails_only_that_request() {
    let f = Factory::new().behave(0, Behaviour { panic_in_call: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(ms(10), ms(10))
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    let err = call(&pool, Job::new(0)).await.unwrap_err();
    assert_eq!(panicked_at(&err), "call");
    assert!(err.to_string().contains("member 0 panicked in call"), "{err}");
    for n in 1..5 {
        assert_eq!(call(&pool, Job::new(n)).await.unwrap(), (1, n));
    }
    assert_eq!(evicted_for_panic(&events), 1);
    assert_eq!(pool.snapshot().in_flight, 0);
    assert!(!pool.handle().is_closed());
}

/// Own case: the panic in the member's response future.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_member_panicking_in_its_response_future_is_evicted() {
    let f = Factory::new().behave(0, Behaviour { panic_in_future: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(ms(10), ms(10))
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    let err = call(&pool, Job::new(0).work(5)).await.unwrap_err();
    assert_eq!(panicked_at(&err), "response");
    assert_eq!(call(&pool, Job::new(1)).await.unwrap(), (1, 1));
    assert_eq!(evicted_for_panic(&events), 1);
    let s = pool.snapshot();
    assert_eq!((s.in_flight, s.evicted), (0, 1));
}

/// Own case: a member panicking in `poll_ready` is evicted; the waiting request is served by
/// its replacement.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_member_panicking_in_poll_ready_is_evicted() {
    let f = Factory::new().behave(0, Behaviour { panic_in_ready: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(ms(10), ms(10))
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    settle().await;
    assert_eq!(call(&pool, Job::new(3)).await.unwrap(), (1, 3));
    assert_eq!(evicted_for_panic(&events), 1);
}

/// Own case: a member panicking in a health check is evicted, the pool serves on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_member_panicking_in_a_health_check_is_evicted() {
    let f = Factory::new().behave(0, Behaviour { panic_in_health: true, ..Behaviour::default() });
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(ms(10), ms(10))
        .health_check(Duration::from_secs(1), || Job { health: true, ..Job::default() })
        .on_event(events.listener())
        .build(f.make())
        .unwrap();
    assert_eq!(call(&pool, Job::new(1)).await.unwrap(), (0, 1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(evicted_for_panic(&events), 1);
    assert_eq!(call(&pool, Job::new(2)).await.unwrap(), (1, 2));
}

/// Own case: a factory that panics (in the make future) counts as a failed make with
/// backoff; the next make succeeds.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_factory_is_a_failed_make() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let attempts = std::sync::Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let events = Events::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .make_backoff(ms(10), ms(10))
        .on_event(events.listener())
        .build(palisade_pool::make_fn(move || {
            let n = a.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n >= 2, "factory panicked on attempt {n}");
                Ok::<_, palisade_core::BoxError>(tower::service_fn(|x: u32| async move {
                    Ok::<_, palisade_core::BoxError>(x)
                }))
            }
        }))
        .unwrap();
    assert_eq!(pool.clone().oneshot(9).await.unwrap(), 9);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(pool.snapshot().make_failures, 2);
    let failed = events.all().into_iter().filter_map(|e| match e {
        PoolEvent::MakeFailed { error, .. } => Some(error),
        _ => None,
    });
    assert!(failed.into_iter().all(|e| e.contains("panicked in make")));
}

/// Own case: a `MakeService` whose `call` panics synchronously (on the worker's task).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_make_service_panicking_in_call_is_a_failed_make() {
    let mut n = 0;
    let make = tower::service_fn(move |()| {
        n += 1;
        assert!(n > 1, "make service panicked");
        std::future::ready(Ok::<_, palisade_core::BoxError>(tower::service_fn(|x: u32| async move {
            Ok::<_, palisade_core::BoxError>(x)
        })))
    });
    let pool = Pool::builder().min_size(1).max_size(1).make_backoff(ms(10), ms(10)).build(make).unwrap();
    assert_eq!(pool.clone().oneshot(4).await.unwrap(), 4);
    assert_eq!(pool.snapshot().make_failures, 1);
}

/// Own case: a listener that panics does not stop the worker.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_listener_does_not_stop_the_pool() {
    let pool = Pool::builder()
        .min_size(1)
        .max_size(2)
        .on_event(|e: &PoolEvent| assert!(!matches!(e, PoolEvent::ScaledUp { .. }), "listener panicked"))
        .build(Factory::new().make())
        .unwrap();
    for n in 0..3 {
        assert_eq!(call(&pool, Job::new(n)).await.unwrap().1, n);
    }
}

// === sizes and durations from a config (issue 15, kinds 1 and 2) ===

/// The given inputs: `max_size` 4294967295 from serde used to abort the process (a 137 GB
/// `Vec::with_capacity`), `max_size(usize::MAX)` to panic with "capacity overflow".
#[cfg(feature = "serde")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_max_size_allocates_nothing_up_front() {
    let config: palisade_pool::PoolConfig = serde_json::from_str(r#"{"max_size": 4294967295}"#).unwrap();
    let pool = config.into_builder::<u32>().build(echo_make!()).unwrap();
    assert_eq!(pool.clone().oneshot(1).await.unwrap(), 1);
    let pool = Pool::builder().max_size(usize::MAX).build(echo_make!()).unwrap();
    assert_eq!(pool.clone().oneshot(2).await.unwrap(), 2);
}

/// Own cases: every other size-like field at its extreme.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn extreme_sizes_are_refused_or_served() {
    let pool = Pool::builder()
        .max_size(usize::MAX)
        .member_concurrency(usize::MAX)
        .scale_up_queue(usize::MAX)
        .evict_after_failures(u32::MAX)
        .build(echo_make!())
        .unwrap();
    assert_eq!(pool.clone().oneshot(3).await.unwrap(), 3);
    // A huge minimum would make members until memory runs out: refused.
    let err =
        Pool::<u32, ()>::builder().min_size(usize::MAX).max_size(usize::MAX).build(echo_make!()).unwrap_err();
    assert_eq!(err.field(), "min_size");
    // The largest minimum accepted: members are made a few per worker turn, and requests
    // are served meanwhile.
    let pool = Pool::builder().min_size(4096).max_size(usize::MAX).build(echo_make!()).unwrap();
    assert_eq!(pool.clone().oneshot(4).await.unwrap(), 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.snapshot().members.len(), 4096);
    assert_eq!(pool.clone().oneshot(5).await.unwrap(), 5);
    drop(pool);
    let err = Pool::<u32, ()>::builder().max_queue(usize::MAX).build(echo_make!()).unwrap_err();
    assert_eq!(err.field(), "max_queue");
}

/// Own cases (kind 1): every duration at `Duration::MAX` builds and serves; before, the
/// housekeeping interval and the health-check interval overflowed the clock.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn huge_durations_mean_never() {
    let pool = Pool::builder()
        .min_size(1)
        .max_size(2)
        .housekeeping_interval(Duration::MAX)
        .health_check(Duration::MAX, || 0u32)
        .idle_timeout(Duration::MAX)
        .scale_down(0.1, Duration::MAX)
        .make_backoff(Duration::MAX, Duration::MAX)
        .make_timeout(Duration::MAX)
        .peak_ewma(Duration::MAX, Duration::MAX)
        .strategy(Strategy::PeakEwma)
        .build(echo_make!())
        .unwrap();
    for n in 0..3 {
        assert_eq!(pool.clone().oneshot(n).await.unwrap(), n);
        tokio::time::sleep(Duration::from_secs(86_400 * 365)).await;
    }
    let report = pool.handle().shutdown(Duration::MAX).await;
    assert!(report.drained);
}

/// Own case: a health check every housekeeping tick at the smallest interval.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tiny_durations_serve() {
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .housekeeping_interval(Duration::from_nanos(1))
        .health_check(Duration::from_nanos(1), || 0u32)
        .make_timeout(Duration::from_nanos(1))
        .build(echo_make!())
        .unwrap();
    for n in 0..10 {
        tokio::time::sleep(Duration::from_nanos(u64::from(n))).await;
        assert_eq!(pool.clone().oneshot(n).await.unwrap(), n);
    }
    // A second of virtual time with a 1 ns interval: one housekeeping round per timer tick
    // (1 ms), not a catch-up burst of a million.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.clone().oneshot(11).await.unwrap(), 11);
}

/// Own case: a member whose `Drop` panics when it is evicted does not stop the worker.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_member_panicking_when_dropped_does_not_stop_the_pool() {
    struct Brittle(u64);
    impl Drop for Brittle {
        fn drop(&mut self) {
            assert!(self.0 != 0 || std::thread::panicking(), "member 0 panicked when dropped");
        }
    }
    impl tower::Service<u32> for Brittle {
        type Response = (u64, u32);
        type Error = palisade_core::BoxError;
        type Future = std::future::Ready<Result<(u64, u32), palisade_core::BoxError>>;
        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, x: u32) -> Self::Future {
            let id = self.0;
            std::future::ready(if id == 0 { Err("member 0 fails".into()) } else { Ok((id, x)) })
        }
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pool = Pool::builder()
        .min_size(1)
        .max_size(1)
        .evict_after_failures(1)
        .make_backoff(ms(10), ms(10))
        .build(palisade_pool::make_fn(move || {
            let id = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(Ok::<_, palisade_core::BoxError>(Brittle(id)))
        }))
        .unwrap();
    assert!(pool.clone().oneshot(1).await.is_err());
    assert_eq!(pool.clone().oneshot(2).await.unwrap(), (1, 2));
    assert_eq!(pool.snapshot().evicted, 1);
}

/// Own case: the config round-trips through serde (the `when_full` form is core's), its
/// defaults are `PoolConfig::default()`, and the old `queue_capacity` name is refused.
#[cfg(feature = "serde")]
#[test]
fn the_config_round_trips_through_serde() {
    use palisade_pool::PoolConfig;
    let mut config = PoolConfig::default();
    config.name = "workers".into();
    config.max_queue = 8;
    config.when_full = WhenFull::wait(ms(250));
    config.strategy = Strategy::PeakEwma;
    config.idle_timeout = Some(Duration::from_secs(300));
    config.seed = Some(7);
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<PoolConfig>(&json).unwrap(), config);
    assert_eq!(serde_json::from_str::<PoolConfig>("{}").unwrap(), PoolConfig::default());
    assert!(serde_json::from_str::<PoolConfig>(r#"{ "queue_capacity": 8 }"#).is_err());
}
