//! [`KeyedRateLimiter`]: one limit per key, over a [`KeyedStore`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use palisade_core::clock::Clock;
use palisade_core::config::ConfigError;
use tokio::time::Instant;

use crate::algorithm::{Algorithm, Status};
use crate::config::DEFAULT_MAX_KEYS;
use crate::error::Denied;
use crate::quota::Quota;
use crate::store::{KeyedStore, LocalStore};

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
///
/// (`K` comes before `Store` here, against CONTRIBUTING's order, because the default store
/// `LocalStore<K>` names it and a default may only name the parameters before it.)
pub struct KeyedRateLimiter<K, Store = LocalStore<K>> {
    store: Arc<Store>,
    _key: PhantomData<fn(&K)>,
}

impl<K, Store> Clone for KeyedRateLimiter<K, Store> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), _key: PhantomData }
    }
}

impl<K, Store: fmt::Debug> fmt::Debug for KeyedRateLimiter<K, Store> {
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

impl<K, Store: KeyedStore<K>> KeyedRateLimiter<K, Store> {
    /// A limiter over any [`KeyedStore`].
    pub fn with_store(store: Store) -> Self {
        Self { store: Arc::new(store), _key: PhantomData }
    }

    /// The store.
    pub fn store(&self) -> &Store {
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

    /// Changes the quota of every key, held or new (see [`RateLimiter::set_quota`](crate::RateLimiter::set_quota)); with
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

    pub(crate) fn store_arc(&self) -> &Arc<Store> {
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
