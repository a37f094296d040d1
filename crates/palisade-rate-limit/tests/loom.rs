#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(loom)]

use std::sync::Arc;

use palisade_rate_limit::{Quota, RateLimiter};
use tokio::time::Instant;

/// Concurrent checks on one token bucket admit exactly its burst, whatever the interleaving.
#[test]
fn concurrent_checks_admit_exactly_the_burst() {
    loom::model(|| {
        let limiter = Arc::new(RateLimiter::token_bucket(Quota::per_second(1).burst(2)).unwrap());
        let now = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let l = limiter.clone();
                loom::thread::spawn(move || u32::from(l.try_acquire_at(1, now).is_ok()))
            })
            .collect();
        let main = u32::from(limiter.try_acquire_at(1, now).is_ok());
        let admitted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum::<u32>() + main;
        assert_eq!(admitted, 2);
    });
}

/// A quota change racing a check: the check sees the old settings or the new ones, never a
/// mix, and the token in use stays in use.
#[test]
fn a_quota_change_is_atomic_for_a_concurrent_check() {
    loom::model(|| {
        let limiter = Arc::new(RateLimiter::token_bucket(Quota::per_second(1).burst(1)).unwrap());
        let now = Instant::now();
        assert!(limiter.try_acquire_at(1, now).is_ok());
        let l = limiter.clone();
        let writer = loom::thread::spawn(move || l.set_quota(Quota::per_second(1).burst(2)).unwrap());
        let second = limiter.try_acquire_at(1, now).is_ok();
        writer.join().unwrap();
        let third = limiter.try_acquire_at(1, now).is_ok();
        // Old quota: nothing more. New quota: exactly one more, before or after the change.
        assert!(!(second && third), "two more admitted with a burst of two and one in use");
        assert!(second || third, "the new burst was lost");
    });
}
