//! governor's `tests/direct.rs` ported with its numbers (the token bucket is GCRA as
//! governor's): burst use-up, refill after exactly one replenish interval, no extra cell
//! after a long idle spell (governor issues #107/#249), weighted checks and
//! `InsufficientCapacity` (palisade: `ExceedsCapacity`), the wait time, thread safety and
//! very large quotas. governor's `FakeRelativeClock` is an explicit reading here
//! (`try_acquire_at`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use palisade_rate_limit::{Denied, Quota, RateLimiter};
use tokio::time::Instant;

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

const MS: Duration = Duration::from_millis(1);

/// A fake clock over a limiter: `advance` moves it, checks read it.
struct Fake {
    lb: RateLimiter,
    now: Instant,
}

impl Fake {
    fn new(per_second: u32) -> Self {
        Self { lb: RateLimiter::token_bucket(Quota::per_second(per_second)).unwrap(), now: Instant::now() }
    }
    fn check(&self) -> Result<(), Denied> {
        self.lb.try_acquire_at(1, self.now)
    }
    fn check_n(&self, n: u32) -> Result<(), Denied> {
        self.lb.try_acquire_at(n, self.now)
    }
    fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

#[test]
fn accepts_first_cell() {
    let _rt = paused().enter();
    assert_eq!(Fake::new(5).check(), Ok(()));
}

#[test]
fn rejects_too_many() {
    let rt = paused();
    let _g = rt.enter();
    let mut lb = Fake::new(2);
    // Use up the burst capacity (2 in the first second).
    assert_eq!(lb.check(), Ok(()));
    lb.advance(MS);
    assert_eq!(lb.check(), Ok(()));
    lb.advance(MS);
    assert_ne!(lb.check(), Ok(()));
    // Ok again in 1 s.
    lb.advance(MS * 1000);
    assert_eq!(lb.check(), Ok(()));
    lb.advance(MS);
    assert_eq!(lb.check(), Ok(()));
    lb.advance(MS);
    assert_ne!(lb.check(), Ok(()));
}

/// governor issues #107 and #249.
#[test]
fn does_not_allow_one_extra_cell_after_longer_interval() {
    let rt = paused();
    let _g = rt.enter();
    let mut lb = Fake::new(5);
    for _ in 1..=5 {
        assert_eq!(lb.check(), Ok(()));
    }
    assert_ne!(lb.check(), Ok(()));
    lb.advance(Duration::from_secs(2));
    for _ in 1..=5 {
        assert_eq!(lb.check(), Ok(()));
    }
    assert_ne!(lb.check(), Ok(()));
}

#[test]
fn all_1_identical_to_1() {
    let rt = paused();
    let _g = rt.enter();
    let mut lb = Fake::new(2);
    assert_eq!(lb.check_n(1), Ok(()));
    lb.advance(MS);
    assert_eq!(lb.check_n(1), Ok(()));
    lb.advance(MS);
    assert_ne!(lb.check_n(1), Ok(()));
    lb.advance(MS * 1000);
    assert_eq!(lb.check_n(1), Ok(()));
    lb.advance(MS);
    assert_eq!(lb.check_n(1), Ok(()));
    lb.advance(MS);
    assert_ne!(lb.check_n(1), Ok(()));
}

#[test]
fn never_allows_more_than_capacity_all() {
    let rt = paused();
    let _g = rt.enter();
    let mut lb = Fake::new(4);
    assert_eq!(lb.check_n(2), Ok(()));
    assert_eq!(lb.check_n(2), Ok(()));
    lb.advance(MS);
    assert_ne!(lb.check_n(2), Ok(()));
    lb.advance(MS * 1000);
    assert_eq!(lb.check_n(2), Ok(()));
    lb.advance(MS);
    assert_eq!(lb.check_n(2), Ok(()));
    lb.advance(MS);
    assert_ne!(lb.check_n(2), Ok(()));
}

#[test]
fn rejects_too_many_all() {
    let rt = paused();
    let _g = rt.enter();
    let mut lb = Fake::new(5);
    // Not the first 15 cells on a capacity-5 bucket, nor 3 s later.
    assert_ne!(lb.check_n(15), Ok(()));
    lb.advance(MS * 3 * 1000);
    assert_ne!(lb.check_n(15), Ok(()));
}

#[test]
fn all_capacity_check_rejects_excess() {
    let rt = paused();
    let _g = rt.enter();
    let lb = Fake::new(5);
    for n in [15, 7, 6] {
        assert_eq!(lb.check_n(n), Err(Denied::CostExceedsCapacity { cost: n, capacity: 5 }));
    }
    assert_eq!(lb.check_n(5), Ok(()));
}

#[test]
fn correct_wait_time() {
    let rt = paused();
    let _g = rt.enter();
    // A new cell every 200 ms.
    let mut lb = Fake::new(5);
    let mut conforming = 0;
    for _ in 0..20 {
        lb.advance(MS);
        match lb.check() {
            Ok(()) => conforming += 1,
            Err(Denied::RetryAfter(wait)) => {
                lb.advance(wait);
                assert_eq!(lb.check(), Ok(()));
                conforming += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(conforming, 20);
}

#[test]
fn actual_threadsafety() {
    let rt = paused();
    let _g = rt.enter();
    let lb = RateLimiter::token_bucket(Quota::per_second(20)).unwrap();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| assert_eq!(lb.try_acquire_at(1, t0), Ok(())));
        }
    });
    assert_ne!(lb.try_acquire_at(1, t0 + MS * 2), Ok(()));
    assert_eq!(lb.try_acquire_at(1, t0 + MS * 1000), Ok(()));
}

/// governor's `stresstest_large_quotas`: a quota above one per nanosecond builds and admits
/// every check from two threads (it never panics or refuses).
#[test]
fn stresstest_large_quotas() {
    let rt = paused();
    let _g = rt.enter();
    let lb = match RateLimiter::token_bucket(Quota::per_second(1_000_000_001)) {
        Ok(lb) => lb,
        Err(e) => panic!("refused: {e}"),
    };
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..100_000 {
                    lb.check().unwrap();
                }
            });
        }
    });
}
