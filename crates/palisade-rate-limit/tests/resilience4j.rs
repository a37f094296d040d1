//! Resilience4j's `AtomicRateLimiterTest` ported with its numbers onto the fixed window (a
//! cycle of 250 ms, one permission per cycle): the fixed window books later windows as
//! Resilience4j's limiter reserves from later cycles.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use palisade_rate_limit::{Algorithm, Denied, Quota, RateLimiter};
use tokio::time::{advance, Instant};

const CYCLE: Duration = Duration::from_millis(250);

fn limiter(per_cycle: u32) -> RateLimiter {
    RateLimiter::new(Algorithm::FixedWindow, Quota::new(per_cycle, CYCLE)).unwrap()
}

/// `acquireAndRefreshWithEventPublishing`: timeout zero; one permission per cycle.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acquire_and_refresh() {
    let rl = limiter(1);
    advance(CYCLE).await;
    assert_eq!(rl.check(), Ok(()));
    assert_eq!(rl.status().remaining, 0);
    assert_eq!(rl.check(), Err(Denied::RetryAfter(CYCLE)), "nanosToWait = one cycle");
    advance(CYCLE).await;
    assert_eq!(rl.check(), Ok(()));
    assert_eq!(rl.check(), Err(Denied::RetryAfter(CYCLE)));
}

/// `reserveFewThenSkipCyclesBeforeRefreshNonBlocking`: timeout one cycle. The first
/// reservation is immediate, the second waits at most a cycle, the third is refused; six
/// cycles later one permission is available again, nothing waits.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reserve_few_then_skip_cycles_before_refresh() {
    let rl = limiter(1);
    advance(CYCLE).await;
    let now = Instant::now();
    assert_eq!(rl.reserve(1, CYCLE).unwrap(), now, "reservation 0: at once");
    let second = rl.reserve(1, CYCLE).unwrap();
    assert!(second > now && second - now <= CYCLE, "positive, at most a cycle");
    assert_eq!(rl.status().queued, 1);
    assert!(rl.reserve(1, CYCLE).is_err(), "-1: refused");
    advance(CYCLE * 5 + Duration::from_nanos(10)).await;
    let s = rl.status();
    assert_eq!((s.remaining, s.queued, s.reset_after), (1, 0, Duration::ZERO));
}

/// `notSpyRawNonBlockingTest`: after `changeLimitForPeriod(2)` the next cycle gives two
/// permissions, then refuses. (Deliberate deviation: Resilience4j applies a new limit from
/// the next cycle on; palisade at once, so the current window also gets the difference.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn change_limit_for_period_applies_to_the_next_cycle() {
    let rl = limiter(1);
    assert_eq!(rl.reserve(1, Duration::ZERO).map(|_| ()), Ok(()));
    advance(CYCLE).await;
    assert!(rl.reserve(1, Duration::ZERO).is_ok());
    assert!(rl.reserve(1, Duration::ZERO).is_err());
    rl.set_quota(Quota::new(2, CYCLE)).unwrap();
    assert!(rl.reserve(1, Duration::ZERO).is_ok(), "palisade: at once");
    assert!(rl.reserve(1, Duration::ZERO).is_err());
    advance(CYCLE).await;
    assert!(rl.reserve(1, Duration::ZERO).is_ok());
    assert!(rl.reserve(1, Duration::ZERO).is_ok());
    assert!(rl.reserve(1, Duration::ZERO).is_err());
}
