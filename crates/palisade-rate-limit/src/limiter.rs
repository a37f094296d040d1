//! [`RateLimiter`] (one limit) and [`KeyedRateLimiter`] (one limit per key), usable on their
//! own or as the tiers of a [`RateLimitLayer`](crate::RateLimitLayer).

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::config::ConfigError;
use tokio::time::Instant;

use crate::algorithm::{Admit, Algorithm, Cell, Denied, Padded, Status};
use crate::clock::{Clock, Epoch};
use crate::quota::Quota;
use crate::store::{Grant, KeyedStore, LocalStore};

/// `at + d`, saturating at about thirty years ahead instead of overflowing.
pub(crate) fn add(at: Instant, d: Duration) -> Instant {
    palisade_core::time::deadline_after(at, d)
}

pub(crate) fn wait_nanos(max_wait: Option<Duration>) -> Option<u64> {
    max_wait.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

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
        Ok(RateLimiter {
            inner: Arc::new(LimiterInner {
                cell: Cell::new(self.algorithm, &self.quota),
                epoch: self.clock.epoch(),
                algorithm: self.algorithm,
                quota: Mutex::new(self.quota),
            }),
        })
    }
}

impl RateLimiter {
    /// A builder for a limiter of `quota`.
    pub fn builder(quota: Quota) -> RateLimiterBuilder {
        RateLimiterBuilder { quota, algorithm: Algorithm::default(), clock: Clock::default() }
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
        *self.inner.quota.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the quota at once, for every clone and every layer using this limiter (as
    /// Resilience4j's `changeLimitForPeriod`): requests already admitted or waiting keep
    /// their slots, the next ones are judged by the new quota. A token bucket keeps the
    /// tokens in use (they come back at the new rate), and a newcomer is never slotted
    /// before the last caller already waiting for a slot (after a raise, newcomers follow
    /// it at the new rate rather than squeeze between the booked callers); a window keeps
    /// what it counted and booked, window by window, and with a lower limit admits nothing
    /// more in a window until its count is below it. The change is
    /// atomic: every decision uses either the old quota or the new one.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `quota` is invalid; the limiter is then unchanged.
    pub fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        quota.validate_for(self.inner.algorithm, "quota")?;
        let mut current = self.inner.quota.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let grant = self.acquire(cost, self.inner.epoch.now_instant(), Some(max_wait))?;
        Ok(grant.ready_at())
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
        Ok(Grant::new(ready, cost).with_token(admit.token))
    }

    pub(crate) fn refund(&self, grant: &Grant) {
        self.refund_admit(grant.admit(), grant.cost());
    }

    /// Admits `cost` at `now`; also returns when it may proceed (`now` when at once).
    #[inline]
    pub(crate) fn admit(
        &self,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> Result<(Admit, Instant), Denied> {
        let epoch = &self.inner.epoch;
        let now_nanos = epoch.nanos(now);
        let admit = self.inner.cell.acquire(now_nanos, cost, wait_nanos(max_wait))?;
        let ready = if admit.ready_at <= now_nanos { now } else { epoch.instant(admit.ready_at) };
        Ok((admit, ready))
    }

    /// Admits `cost` now in reject mode, reading the limiter's own clock (the fast path of a
    /// layer); also returns when it may proceed (a leaky bucket may queue it).
    #[inline]
    pub(crate) fn admit_now(&self, cost: u32) -> Result<(Admit, Option<Instant>), Denied> {
        let now = self.inner.epoch.now();
        let admit = self.inner.cell.acquire(now, cost, None)?;
        let later = (admit.ready_at > now).then(|| self.inner.epoch.instant(admit.ready_at));
        Ok((admit, later))
    }

    pub(crate) fn refund_admit(&self, admit: Admit, cost: u32) {
        self.inner.cell.refund(admit, cost, self.inner.epoch.now());
    }
}

/// One rate limit per key, with at most a bounded number of keys; see
/// [`LocalStore`] for eviction and [`KeyedStore`] for other backends.
///
/// ```
/// use palisade_rate_limit::{KeyedRateLimiter, Quota};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // Free users 1 per second, paid users 3 per second.
/// let limiter = KeyedRateLimiter::builder()
///     .quota_by_key(|user: &&str| if user.starts_with("paid") { Quota::per_second(3) } else { Quota::per_second(1) })
///     .max_keys(10_000)
///     .build()
///     .unwrap();
/// assert!(limiter.check_key(&"free-1").is_ok());
/// assert!(limiter.check_key(&"free-1").is_err());
/// assert!((0..3).all(|_| limiter.check_key(&"paid-1").is_ok()));
/// # }
/// ```
///
/// # Clone
///
/// Clones share the same store (an `Arc`).
pub struct KeyedRateLimiter<K, St = LocalStore<K>> {
    store: Arc<St>,
    _key: PhantomData<fn(&K)>,
}

impl<K, St> Clone for KeyedRateLimiter<K, St> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), _key: PhantomData }
    }
}

impl<K, St: fmt::Debug> fmt::Debug for KeyedRateLimiter<K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter").field("store", &self.store).finish()
    }
}

impl<K> KeyedRateLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A builder for a limiter kept in memory ([`LocalStore`]).
    pub fn builder() -> KeyedRateLimiterBuilder<K> {
        KeyedRateLimiterBuilder::new()
    }
}

impl<K, St: KeyedStore<K>> KeyedRateLimiter<K, St> {
    /// A limiter over any [`KeyedStore`].
    pub fn with_store(store: St) -> Self {
        Self { store: Arc::new(store), _key: PhantomData }
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// Admits one request for `key` now, or says when to retry.
    #[inline]
    pub fn check_key(&self, key: &K) -> Result<(), Denied> {
        self.try_acquire_key(key, 1)
    }

    /// Admits a request of weight `cost` for `key` now, or says when to retry.
    #[inline]
    pub fn try_acquire_key(&self, key: &K, cost: u32) -> Result<(), Denied> {
        self.store.check(key, cost)
    }

    /// Changes the quota of every key, held or new (see [`RateLimiter::set_quota`]); with
    /// `quota_by_key`, the per-key choice is replaced by this quota.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `quota` is invalid or the store cannot change quotas.
    pub fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        self.store.set_quota(quota)
    }

    /// What the limit holds for `key` (`None` when the key is not tracked).
    pub fn status(&self, key: &K) -> Option<Status> {
        self.store.status(key, Instant::now())
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.store.keys()
    }

    /// `true` when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys forgotten so far (each was back to a fresh key's state).
    pub fn evictions(&self) -> u64 {
        self.store.evictions()
    }

    /// New keys refused so far because every held key still constrained someone.
    pub fn overflows(&self) -> u64 {
        self.store.overflows()
    }

    /// Forgets every key whose limit is back to a fresh key's state; returns how many went.
    pub fn sweep(&self) -> usize {
        self.store.sweep()
    }

    pub(crate) fn store_arc(&self) -> &Arc<St> {
        &self.store
    }
}

/// Builds a [`KeyedRateLimiter`] in memory.
pub struct KeyedRateLimiterBuilder<K> {
    algorithm: Algorithm,
    quota: Option<Quota>,
    quota_fn: Option<Arc<dyn Fn(&K) -> Quota + Send + Sync>>,
    max_keys: usize,
    clock: Clock,
}

impl<K> fmt::Debug for KeyedRateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterBuilder")
            .field("algorithm", &self.algorithm)
            .field("quota", &self.quota)
            .field("quota_by_key", &self.quota_fn.is_some())
            .field("max_keys", &self.max_keys)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Keys tracked by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl<K> KeyedRateLimiterBuilder<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn new() -> Self {
        Self {
            algorithm: Algorithm::default(),
            quota: None,
            quota_fn: None,
            max_keys: DEFAULT_MAX_KEYS,
            clock: Clock::default(),
        }
    }

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

    /// The same quota for every key.
    pub fn quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// A quota chosen per key (asked once, when the key is first seen); a zero limit blocks
    /// the key.
    pub fn quota_by_key<F>(mut self, f: F) -> Self
    where
        F: Fn(&K) -> Quota + Send + Sync + 'static,
    {
        self.quota_fn = Some(Arc::new(f));
        self
    }

    /// The most keys tracked (default [`DEFAULT_MAX_KEYS`]). Memory grows with the keys
    /// held, not with this bound. A key is forgotten only once its limit is back to a
    /// fresh key's; when all are still in use a new key is refused with
    /// [`Denied::KeySetFull`] (see [`LocalStore`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when neither or both quotas are set, the quota is invalid, or
    /// `max_keys` is zero.
    pub fn build(self) -> Result<KeyedRateLimiter<K>, ConfigError> {
        let store = self.build_store()?;
        Ok(KeyedRateLimiter::with_store(store))
    }

    /// The in-memory store alone, e.g. to wrap it in a [`KeyedStore`] of your own.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_store(self) -> Result<LocalStore<K>, ConfigError> {
        palisade_core::config::ensure(self.max_keys > 0, "max_keys", "must be at least 1")?;
        let quota_fn = match (self.quota, self.quota_fn) {
            (Some(q), None) => {
                q.validate_for(self.algorithm, "quota")?;
                let f: Arc<dyn Fn(&K) -> Quota + Send + Sync> = Arc::new(move |_: &K| q);
                f
            }
            (None, Some(f)) => f,
            (None, None) => return Err(ConfigError::new("quota", "set `quota` or `quota_by_key`")),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new("quota", "set only one of `quota` and `quota_by_key`"))
            }
        };
        Ok(LocalStore::new(self.algorithm, quota_fn, self.max_keys, &self.clock))
    }
}
