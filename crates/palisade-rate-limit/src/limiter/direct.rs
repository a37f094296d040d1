//! [`RateLimiter`]: one limit shared by every clone.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::clock::{Clock, Epoch};
use palisade_core::config::ConfigError;
use tokio::time::Instant;

use super::wait_nanos;
use crate::algorithm::{Admit, Algorithm, Cell, Padded, Status};
use crate::error::Denied;
use crate::quota::Quota;
use crate::store::Grant;

/// One rate limit shared by every clone: a lock-free token bucket by default.
///
/// ```
/// use palisade_rate_limit::{Denied, Quota, RateLimiter};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let limiter = RateLimiter::token_bucket(Quota::per_second(10).burst(2)).unwrap();
/// assert!(limiter.check().is_ok());
/// assert!(limiter.check().is_ok());
/// assert_eq!(limiter.check(), Err(Denied::RetryAfter(Duration::from_millis(100))));
/// tokio::time::advance(Duration::from_millis(100)).await;
/// assert!(limiter.check().is_ok());
///
/// // Tuned at run time: takes effect at once, the tokens in use stay in use.
/// limiter.set_quota(Quota::per_second(100).burst(4)).unwrap();
/// assert!(limiter.check().is_ok()); // 2 of 4 in use: 2 more now
/// assert!(limiter.check().is_ok());
/// assert_eq!(limiter.check(), Err(Denied::RetryAfter(Duration::from_millis(10))));
/// # }
/// ```
///
/// # Clone
///
/// Clones share the same state (an `Arc`).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<LimiterInner>,
}

struct LimiterInner {
    cell: Cell<Padded>,
    epoch: Epoch,
    algorithm: Algorithm,
    quota: Mutex<Quota>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("algorithm", &self.inner.algorithm)
            .field("quota", &self.quota())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RateLimiter`]; from [`RateLimiter::builder`].
#[derive(Clone, Debug)]
pub struct RateLimiterBuilder {
    quota: Quota,
    algorithm: Algorithm,
    clock: Clock,
}

impl RateLimiterBuilder {
    /// The algorithm (default token bucket).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The clock (default [`Clock::tokio`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota is invalid ([`Quota::validate`]).
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        self.quota.validate_for(self.algorithm, "quota")?;
        Ok(RateLimiter::from_valid(self.quota, self.algorithm, &self.clock))
    }
}

impl RateLimiter {
    /// A builder for a limiter of `quota`.
    pub fn builder(quota: Quota) -> RateLimiterBuilder {
        RateLimiterBuilder { quota, algorithm: Algorithm::default(), clock: Clock::default() }
    }

    /// A limiter of a quota already validated for `algorithm`.
    pub(crate) fn from_valid(quota: Quota, algorithm: Algorithm, clock: &Clock) -> Self {
        Self {
            inner: Arc::new(LimiterInner {
                cell: Cell::new(algorithm, &quota),
                epoch: clock.epoch(),
                algorithm,
                quota: Mutex::new(quota),
            }),
        }
    }

    /// A limiter using `algorithm` for `quota`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota has a zero limit, period or burst.
    pub fn new(algorithm: Algorithm, quota: Quota) -> Result<Self, ConfigError> {
        Self::builder(quota).algorithm(algorithm).build()
    }

    /// A token bucket (GCRA) limiter for `quota`.
    pub fn token_bucket(quota: Quota) -> Result<Self, ConfigError> {
        Self::new(Algorithm::TokenBucket, quota)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// The quota now.
    pub fn quota(&self) -> Quota {
        *palisade_core::sync::lock(&self.inner.quota)
    }

    /// Changes the quota at once, for every clone and every layer using this limiter (as
    /// Resilience4j's `changeLimitForPeriod`): requests already admitted or waiting keep
    /// their slots, the next ones are judged by the new quota. A token bucket keeps the
    /// tokens in use (they come back at the new rate), and a newcomer is never slotted
    /// before the last caller already waiting for a slot (after a raise, newcomers follow
    /// it at the new rate rather than squeeze between the booked callers); a window keeps
    /// what it counted and booked, window by window, and with a lower limit admits nothing
    /// more in a window until its count is below it. The change is
    /// atomic: every decision uses either the old quota or the new one. A token bucket
    /// reservation made before a change (a service polled ready and not yet called) lapses:
    /// given back, it returns nothing. Setting the quota it already has changes nothing.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `quota` is invalid; the limiter is then unchanged.
    pub fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        quota.validate_for(self.inner.algorithm, "quota")?;
        let mut current = palisade_core::sync::lock(&self.inner.quota);
        self.inner.cell.set_quota(&quota, self.inner.epoch.now());
        *current = quota;
        Ok(())
    }

    /// Admits one request now, or says when to retry.
    #[inline]
    pub fn check(&self) -> Result<(), Denied> {
        self.try_acquire(1)
    }

    /// Admits a request of weight `cost` now, or says when to retry.
    #[inline]
    pub fn try_acquire(&self, cost: u32) -> Result<(), Denied> {
        self.inner.cell.acquire(self.inner.epoch.now(), cost, Some(0)).map(|_| ())
    }

    /// [`try_acquire`](Self::try_acquire) as if the time were `now`.
    #[inline]
    pub fn try_acquire_at(&self, cost: u32, now: Instant) -> Result<(), Denied> {
        let now = self.inner.epoch.nanos(now);
        self.inner.cell.acquire(now, cost, Some(0)).map(|_| ())
    }

    /// Reserves `cost` at the earliest time no more than `max_wait` from now and returns that
    /// time; the caller should proceed then (later callers queue behind it). For a leaky
    /// bucket this takes a place in its queue.
    pub fn reserve(&self, cost: u32, max_wait: Duration) -> Result<Instant, Denied> {
        // Tokio's now and the limiter's reading of it (the same reading with tokio's clock):
        // the slot is dated by the limiter's wait from tokio's now, as every layer path
        // dates it. (The fast clock's absolute time mapped onto tokio's drifts from it: a
        // free slot was dated in the future, a slot a second away in the past.)
        let (_, ready) = self.admit(cost, Instant::now(), Some(max_wait))?;
        Ok(ready)
    }

    /// What the limit holds now.
    pub fn status(&self) -> Status {
        self.inner.cell.status(self.inner.epoch.now())
    }

    #[inline]
    pub(crate) fn acquire(
        &self,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> Result<Grant, Denied> {
        let (admit, ready) = self.admit(cost, now, max_wait)?;
        Ok(Grant::new(ready, cost).with_token(admit.token).with_mark(admit.mark))
    }

    /// What [`acquire`](Self::acquire) would answer, booking nothing.
    pub(crate) fn probe(&self, cost: u32, now: Instant, max_wait: Option<Duration>) -> Result<(), Denied> {
        self.inner.cell.probe(self.inner.epoch.at_end(Some(now)), cost, wait_nanos(max_wait))
    }

    pub(crate) fn refund(&self, grant: Grant) {
        let cost = grant.cost();
        self.refund_admit(grant.into_admit(), cost);
    }

    /// Admits `cost` at `now`; also returns when it may proceed (`now` when at once).
    #[inline]
    pub(crate) fn admit(
        &self,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> Result<(Admit, Instant), Denied> {
        // The limiter's own clock: `now` with tokio's, a reading of its own with quanta's
        // (tokio's instants do not mix with it: they drift apart).
        self.admit_at(cost, now, self.inner.epoch.at_end(Some(now)), max_wait)
    }

    /// [`admit`](Self::admit) with the limiter's reading `now_nanos` taken at `now`.
    #[inline]
    fn admit_at(
        &self,
        cost: u32,
        now: Instant,
        now_nanos: u64,
        max_wait: Option<Duration>,
    ) -> Result<(Admit, Instant), Denied> {
        let admit = self.inner.cell.acquire(now_nanos, cost, wait_nanos(max_wait))?;
        Ok((admit, ready_after(now, now_nanos, admit.ready_at)))
    }

    /// Admits `cost` now in reject mode, reading the limiter's own clock (the fast path of a
    /// layer); also returns when it may proceed (a leaky bucket may queue it).
    #[inline]
    pub(crate) fn admit_now(&self, cost: u32) -> Result<(Admit, Option<Instant>), Denied> {
        let now = self.inner.epoch.now();
        let admit = self.inner.cell.acquire(now, cost, None)?;
        let later = (admit.ready_at > now).then(|| ready_after(Instant::now(), now, admit.ready_at));
        Ok((admit, later))
    }

    pub(crate) fn refund_admit(&self, admit: Admit, cost: u32) {
        self.inner.cell.refund(admit, cost, self.inner.epoch.now());
    }
}

/// The tokio instant at which a request admitted for `ready_at` (limiter nanoseconds) may
/// go, counted from `now` (tokio) read with `now_nanos` (limiter): the wait is carried
/// over, not the limiter's absolute time, so a fast clock apart from tokio's still waits
/// exactly the limiter's wait.
#[inline]
pub(crate) fn ready_after(now: Instant, now_nanos: u64, ready_at: u64) -> Instant {
    if ready_at <= now_nanos {
        now
    } else {
        super::add(now, Duration::from_nanos(ready_at - now_nanos))
    }
}
