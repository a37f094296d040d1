//! [`RateLimiter`] (one limit) and [`KeyedRateLimiter`] (one limit per key), usable on their
//! own or as the tiers of a [`RateLimitLayer`](crate::RateLimitLayer).

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use tokio::time::Instant;

use crate::algorithm::{Admit, Algorithm, Cell, Denied, Padded, Status};
use crate::quota::Quota;
use crate::store::{Grant, KeyedStore, LocalStore};

/// Converts between `tokio::time::Instant` and a limiter's nanosecond clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    pub(crate) fn now() -> Self {
        Self(Instant::now())
    }

    #[inline]
    pub(crate) fn nanos(self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.0);
        d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos()))
    }

    #[inline]
    pub(crate) fn instant(self, nanos: u64) -> Instant {
        add(self.0, Duration::from_nanos(nanos))
    }
}

/// `at + d`, saturating at about thirty years ahead instead of overflowing.
pub(crate) fn add(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    at.checked_add(d.min(FAR)).unwrap_or(at)
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
    quota: Quota,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("algorithm", &self.inner.algorithm)
            .field("quota", &self.inner.quota)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter using `algorithm` for `quota`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota has a zero limit, period or burst.
    pub fn new(algorithm: Algorithm, quota: Quota) -> Result<Self, ConfigError> {
        quota.validate("quota")?;
        Ok(Self {
            inner: Arc::new(LimiterInner {
                cell: Cell::new(algorithm, &quota),
                epoch: Epoch::now(),
                algorithm,
                quota,
            }),
        })
    }

    /// A token bucket (GCRA) limiter for `quota`.
    pub fn token_bucket(quota: Quota) -> Result<Self, ConfigError> {
        Self::new(Algorithm::TokenBucket, quota)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// Admits one request now, or says when to retry.
    #[inline]
    pub fn check(&self) -> Result<(), Denied> {
        self.try_acquire(1)
    }

    /// Admits a request of weight `cost` now, or says when to retry.
    #[inline]
    pub fn try_acquire(&self, cost: u32) -> Result<(), Denied> {
        self.try_acquire_at(cost, Instant::now())
    }

    /// [`try_acquire`](Self::try_acquire) as if the time were `now`.
    #[inline]
    pub fn try_acquire_at(&self, cost: u32, now: Instant) -> Result<(), Denied> {
        let now = self.inner.epoch.nanos(now);
        self.inner.cell.acquire(now, cost, Some(0)).map(|_| ())
    }

    /// Reserves `cost` at the earliest time no more than `max_wait` from now and returns that
    /// time; the caller should proceed then. Bucket algorithms reserve a future slot (later
    /// callers queue behind it); window algorithms admit only at once.
    pub fn reserve(&self, cost: u32, max_wait: Duration) -> Result<Instant, Denied> {
        let grant = self.acquire(cost, Instant::now(), Some(max_wait))?;
        Ok(grant.ready_at())
    }

    /// What the limit holds now.
    pub fn status(&self) -> Status {
        self.inner.cell.status(self.inner.epoch.nanos(Instant::now()))
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
        let epoch = self.inner.epoch;
        let now_nanos = epoch.nanos(now);
        let admit = self.inner.cell.acquire(now_nanos, cost, wait_nanos(max_wait))?;
        let ready = if admit.ready_at <= now_nanos { now } else { epoch.instant(admit.ready_at) };
        Ok((admit, ready))
    }

    pub(crate) fn refund_admit(&self, admit: Admit, cost: u32) {
        let now = self.inner.epoch.nanos(Instant::now());
        self.inner.cell.refund(admit, cost, now);
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
        self.store.acquire(key, cost, Instant::now(), Some(Duration::ZERO)).map(|_| ())
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
}

impl<K> fmt::Debug for KeyedRateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterBuilder")
            .field("algorithm", &self.algorithm)
            .field("quota", &self.quota)
            .field("quota_by_key", &self.quota_fn.is_some())
            .field("max_keys", &self.max_keys)
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
        Self { algorithm: Algorithm::default(), quota: None, quota_fn: None, max_keys: DEFAULT_MAX_KEYS }
    }

    /// The algorithm (default token bucket).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
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
                q.validate("quota")?;
                let f: Arc<dyn Fn(&K) -> Quota + Send + Sync> = Arc::new(move |_: &K| q);
                f
            }
            (None, Some(f)) => f,
            (None, None) => return Err(ConfigError::new("quota", "set `quota` or `quota_by_key`")),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new("quota", "set only one of `quota` and `quota_by_key`"))
            }
        };
        Ok(LocalStore::new(self.algorithm, quota_fn, self.max_keys))
    }
}
