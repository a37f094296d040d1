//! Unit tests of the budgets (the published slot needs the private state).
#![allow(clippy::float_cmp)] // exact values are the point

use super::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ratio_budget_has_a_floor_and_a_ratio() {
    // Floor: 2/s over 10 s = 20 retries with no traffic at all.
    let b = RetryBudget::ratio(Duration::from_secs(10), 2, 0.1).unwrap();
    let floor = (0..100).filter(|_| b.try_withdraw()).count();
    assert_eq!(floor, 20);
    // 100 requests buy 10 more.
    for _ in 0..100 {
        b.deposit();
    }
    assert_eq!((0..100).filter(|_| b.try_withdraw()).count(), 10);
    // After the window, withdrawals and deposits are forgotten.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(b.remaining(), 20.0);
}

fn published(b: &RetryBudget) -> u32 {
    match &*b.kind {
        Kind::Ratio(r) => r.current.load(Ordering::Acquire),
        _ => 0,
    }
}

/// A multi-thread runtime publishes the slot and its timer withdraws it; the runtime's
/// shutdown fires the timer too (which is what this test can observe without real time).
#[test]
fn the_published_slot_ends_with_its_timer() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
    rt.block_on(async { b.deposit() });
    assert_ne!(published(&b), 0, "the first deposit publishes its slot");
    drop(rt);
    assert_eq!(published(&b), 0, "the slot's timer withdrew it");
}

/// A current-thread runtime publishes nothing (its timers run only inside `block_on`):
/// every deposit reads the clock and counts for its full ttl.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_current_thread_runtime_reads_the_clock() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
    b.deposit();
    assert_eq!(published(&b), 0);
    tokio::time::advance(Duration::from_millis(100)).await;
    b.deposit();
    // 0.9 s later the second deposit still counts, the first has expired.
    tokio::time::advance(Duration::from_millis(950)).await;
    assert_eq!(b.remaining(), 1.0);
}

/// The layers' every-64th deposit reads the clock: a published slot that ended (its
/// timer not run yet, as on a starved runtime) is withdrawn and the deposit counts now.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_exact_deposit_withdraws_a_stale_slot() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
    b.deposit();
    let Kind::Ratio(r) = &*b.kind else { unreachable!() };
    // Stand in for a timer that has not run: publish a slot 0.9 s old.
    tokio::time::advance(Duration::from_millis(900)).await;
    r.current.store(r.deposits.epoch(Instant::now()) - 9, Ordering::Release);
    b.deposit_exact();
    assert_eq!(published(&b), 0);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(b.remaining(), 1.0, "the exact deposit counts from its true time");
}

/// A runtime without timers cannot publish a slot: every deposit reads the clock, and
/// nothing panics.
#[test]
fn a_runtime_without_timers_reads_the_clock() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
    rt.block_on(async {
        b.deposit();
        b.deposit();
    });
    assert_eq!(published(&b), 0);
    assert_eq!(b.remaining(), 2.0);
}

#[test]
fn zero_ratio_leaves_only_the_floor() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 3, 0.0).unwrap();
    for _ in 0..1000 {
        b.deposit();
    }
    assert_eq!((0..10).filter(|_| b.try_withdraw()).count(), 3);
}

#[test]
fn token_bucket_follows_grpc_a6() {
    let b = RetryBudget::token_bucket(4, 0.5).unwrap();
    assert!(b.try_withdraw()); // 4 > 2
    b.record(true, false); // 3
    assert!(b.try_withdraw());
    b.record(true, false); // 2: not more than half
    assert!(!b.try_withdraw());
    b.record(false, true); // 2.5
    assert!(b.try_withdraw());
    for _ in 0..10 {
        b.record(false, true);
    }
    assert_eq!(b.remaining(), 4.0);
    for _ in 0..10 {
        b.record(true, false);
    }
    assert_eq!(b.remaining(), 0.0);
}

#[test]
fn bad_settings_are_refused() {
    assert_eq!(RetryBudget::ratio(Duration::ZERO, 1, 0.2).unwrap_err().field(), "budget.ttl");
    assert_eq!(RetryBudget::ratio(Duration::from_secs(10), 1, -1.0).unwrap_err().field(), "budget.ratio");
    assert_eq!(RetryBudget::token_bucket(0, 0.1).unwrap_err().field(), "budget.max_tokens");
    assert_eq!(RetryBudget::token_bucket(10, f64::NAN).unwrap_err().field(), "budget.token_ratio");
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// A runtime dropped while its timer guards the published slot: its shutdown fires the
/// timer, the slot is withdrawn, and deposits from the next runtime count at their time.
#[test]
fn a_dropped_runtime_withdraws_its_slot() {
    let b = RetryBudget::ratio(Duration::from_secs(10), 0, 0.5).unwrap();
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
    first.block_on(async { b.deposit() });
    assert_ne!(published(&b), 0);
    drop(first);
    assert_eq!(published(&b), 0, "the runtime's shutdown fired the slot's timer");
    paused_runtime().block_on(async {
        tokio::time::advance(Duration::from_secs(20)).await;
        b.deposit();
        b.deposit();
        assert!(b.try_withdraw(), "two deposits made now pay for one retry");
    });
}

/// A slot published from a runtime that is alive but no longer driven (a current-thread
/// runtime whose `block_on` returned: its timer never fires) must not catch the deposits
/// another runtime makes after the slot ended.
#[test]
fn a_slot_published_by_an_idle_runtime_does_not_outlive_its_time() {
    let b = RetryBudget::ratio(Duration::from_secs(10), 0, 0.5).unwrap();
    let idle = paused_runtime();
    idle.block_on(async { b.deposit() });
    paused_runtime().block_on(async {
        tokio::time::advance(Duration::from_secs(20)).await;
        b.deposit();
        b.deposit();
        assert!(b.try_withdraw(), "two deposits made now pay for one retry");
    });
    drop(idle);
}
