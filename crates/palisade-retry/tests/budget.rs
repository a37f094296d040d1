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

/// Finagle's `RetryBudgetTest.testBudget` (finagle-core), frozen time: 10,000 requests, each
/// followed by a withdrawal attempt; `ratio × 10,000 + min_per_sec × ttl` retries, ±1 for
/// the fixed-point arithmetic, and nothing left whenever a withdrawal is refused.
fn finagle_test_budget(ttl: Duration, min_per_sec: u32, ratio: f64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let b = RetryBudget::ratio(ttl, min_per_sec, ratio).unwrap();
        let min_retries = u64::from(min_per_sec) * ttl.as_secs();
        assert_eq!(b.remaining(), min_retries as f64);
        if min_retries == 0 {
            assert!(!b.try_withdraw());
        }
        let requests = 10_000;
        let mut retried = 0u64;
        for i in 0..requests {
            b.deposit();
            if b.try_withdraw() {
                retried += 1;
            } else {
                assert_eq!(b.remaining(), 0.0, "request {i}, ratio {ratio}");
            }
        }
        let expected = (f64::from(requests) * ratio) as u64 + min_retries;
        assert!(retried.abs_diff(expected) <= 1, "ratio {ratio}: {retried} retries, expected {expected}");
    });
}

#[test]
fn finagle_min_retries_per_sec_zero() {
    for ratio in [0.1, 0.5, 0.25, 0.75, 0.99, 0.999, 0.9999, 0.01, 0.001, 0.0001] {
        finagle_test_budget(Duration::from_secs(60), 0, ratio);
    }
}

#[test]
fn finagle_with_min_retries() {
    finagle_test_budget(Duration::from_secs(1), 10, 0.0);
    finagle_test_budget(Duration::from_secs(2), 5, 0.0);
    finagle_test_budget(Duration::from_secs(1), 10, 0.1);
    finagle_test_budget(Duration::from_secs(2), 5, 0.5);
}

/// Finagle: "minRetries=0, maxPercentOver greater than 1.0": 10,000 deposits at 200 % pay
/// for 20,000 retries.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn finagle_ratio_above_one() {
    let b = RetryBudget::ratio(Duration::from_secs(60), 0, 2.0).unwrap();
    assert_eq!(b.remaining(), 0.0);
    assert!(!b.try_withdraw());
    for _ in 0..10_000 {
        b.deposit();
    }
    assert_eq!(b.remaining(), 20_000.0);
}

/// Finagle: bounds are checked (ttl 0 and 61 s, a negative ratio) — a `ConfigError` here.
#[test]
fn finagle_bounds() {
    assert!(RetryBudget::ratio(Duration::ZERO, 5, 0.1).is_err());
    assert!(RetryBudget::ratio(Duration::from_secs(61), 5, 0.1).is_err());
    assert!(RetryBudget::ratio(Duration::from_secs(10), 0, -1.0).is_err());
    // "minRetriesPerSec=0 maxPercentOver=0 should be empty".
    let empty = RetryBudget::ratio(Duration::from_secs(10), 0, 0.0).unwrap();
    empty.deposit();
    assert!(!empty.try_withdraw());
}
