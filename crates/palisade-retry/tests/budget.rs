#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]
//! Retry budgets against their references: tower's `TpsBudget` tests (tower/src/retry/budget/
//! tps_budget.rs) with their numbers, Finagle's default, and gRFC A6's token bucket.

use std::time::Duration;

use palisade_retry::RetryBudget;
use tokio::time::advance;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// tower `tps_empty`: no floor, nothing deposited, nothing to withdraw.
#[test]
fn tps_empty() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
    assert!(!b.try_withdraw());
}

/// tower `tps_leaky`: a deposit expires after the ttl.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tps_leaky() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
    b.deposit();
    advance(Duration::from_secs(3)).await;
    assert!(!b.try_withdraw());
}

/// tower `tps_slots`, and issue 14.1's regression: after an idle spell, deposits count at
/// their true time. Before the fix the last `try_withdraw` was false (the three deposits
/// were credited to a cached slot that had already expired).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tps_slots() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 0.5).unwrap();
    b.deposit();
    b.deposit();
    advance(ms(901)).await;
    // 900 ms later the deposits still count.
    assert!(b.try_withdraw());

    // A blank slate.
    advance(ms(2001)).await;
    b.deposit();
    advance(ms(301)).await;
    b.deposit();
    advance(ms(801)).await;
    b.deposit();
    // The first deposit has expired; the second and third (younger than 1 s) pay for one.
    assert!(b.try_withdraw());
    assert!(!b.try_withdraw());
}

/// tower `tps_reserve`: the floor alone gives `min_per_sec × ttl` retries.
#[test]
fn tps_reserve() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 5, 1.0).unwrap();
    for _ in 0..5 {
        assert!(b.try_withdraw());
    }
    assert!(!b.try_withdraw());
}

/// A quiet client (one request a minute, no floor) keeps its retries: each request's
/// deposit counts in full for `ttl`, wherever the last clock read was.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_quiet_client_keeps_its_retries_after_every_idle_spell() {
    let b = RetryBudget::ratio(Duration::from_secs(10), 0, 1.0).unwrap();
    for _ in 0..20 {
        advance(Duration::from_secs(60)).await;
        b.deposit();
        advance(ms(9_000)).await;
        assert!(b.try_withdraw(), "the deposit made 9 s ago still counts");
        assert!(!b.try_withdraw());
    }
    // 17 deposits in a burst then a long pause: all expire together.
    for _ in 0..17 {
        b.deposit();
    }
    assert_eq!(b.remaining(), 17.0);
    advance(Duration::from_secs(11)).await;
    assert_eq!(b.remaining(), 0.0);
}

/// Finagle's default (ttl 10 s, 10/s floor, 20 %): 100 retries from the floor, plus one per
/// five requests.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn finagle_default_numbers() {
    let b = RetryBudget::default();
    assert_eq!(b.remaining(), 100.0);
    for _ in 0..50 {
        b.deposit();
    }
    assert_eq!(b.remaining(), 110.0);
    assert_eq!((0..200).filter(|_| b.try_withdraw()).count(), 110);
    // Withdrawals expire with the window too.
    advance(Duration::from_secs(11)).await;
    assert_eq!(b.remaining(), 100.0);
}

/// gRFC A6 retry throttling: `max_tokens` 10, `token_ratio` 0.1: a failure takes 1, a success
/// gives 0.1, retries only while more than half remain.
#[test]
fn grpc_a6_token_bucket_numbers() {
    let b = RetryBudget::token_bucket(10, 0.1).unwrap();
    assert_eq!(b.remaining(), 10.0);
    for _ in 0..4 {
        b.record(true, false);
    }
    assert_eq!(b.remaining(), 6.0);
    assert!(b.try_withdraw());
    b.record(true, false); // 5.0: not more than half
    assert!(!b.try_withdraw());
    b.record(false, true); // 5.1
    assert!(b.try_withdraw());
    assert!((b.remaining() - 5.1).abs() < 1e-9);
    // Never below zero, never above the max.
    for _ in 0..100 {
        b.record(true, false);
    }
    assert_eq!(b.remaining(), 0.0);
    for _ in 0..1000 {
        b.record(false, true);
    }
    assert_eq!(b.remaining(), 10.0);
}
