//! The storage seam for keyed limits: [`KeyedStore`], and [`LocalStore`], the in-memory one.
//!
//! A keyed limit asks its store to admit a request for a key and, when the admission is not
//! used (the service was dropped after `poll_ready`, the response future was dropped while
//! waiting, a later tier refused), to give it back. [`LocalStore`] keeps one limiter per key
//! in a bounded `KeyedMap`. A shared backend (Redis, a database) implements the same trait;
//! because the trait is synchronous, such a backend is expected to answer from local state
//! (for instance a lease of tokens fetched ahead of time and synced in the background)
//! rather than block on the network per request.
//!
//! # Example
//!
//! ```
//! use palisade_rate_limit::store::{KeyedStore, LocalStore};
//! use palisade_rate_limit::{KeyedRateLimiter, Quota};
//! use tokio::time::Instant;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let limiter: KeyedRateLimiter<&str, LocalStore<&str>> =
//!     KeyedRateLimiter::builder().quota(Quota::per_second(2)).max_keys(1_000).build().unwrap();
//! let store = limiter.store();
//! let grant = store.acquire(&"alice", 1, Instant::now(), None).unwrap();
//! assert_eq!(store.status(&"alice", Instant::now()).unwrap().remaining, 1);
//! store.refund(grant); // not used after all
//! assert_eq!(store.status(&"alice", Instant::now()).unwrap().remaining, 2);
//! assert_eq!(store.keys(), 1);
//! # }
//! ```

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::keyed::{Forget, KeyedMap};
use tokio::time::Instant;

use crate::algorithm::{Admit, Algorithm, Cell, Status};
use crate::error::Denied;
use crate::limiter::wait_nanos;
use crate::quota::Quota;
use palisade_core::clock::{Clock, Epoch};

/// Where keyed limits keep their state. See the [module docs](self).
pub trait KeyedStore<K>: Send + Sync + 'static {
    /// Admits `cost` for `key` at `now`. `max_wait` is `None` when requests are rejected at
    /// once; with `Some`, the store may admit for a time up to `max_wait` ahead
    /// ([`Grant::ready_at`]), holding that slot for the caller.
    fn acquire(&self, key: &K, cost: u32, now: Instant, max_wait: Option<Duration>) -> Result<Grant, Denied>;

    /// Gives back an admission that was never used. The grant is taken by value (and
    /// [`Grant`] is not `Clone`): an admission can be given back once only.
    fn refund(&self, grant: Grant);

    /// What the limit holds for `key`, if the store tracks it.
    fn status(&self, key: &K, now: Instant) -> Option<Status>;

    /// Keys tracked now.
    fn keys(&self) -> usize;

    /// Keys evicted so far.
    fn evictions(&self) -> u64;

    /// Admits `cost` for `key` now, or says when to retry (the direct check of
    /// [`KeyedRateLimiter::check_key`](crate::KeyedRateLimiter::check_key); nothing to refund).
    /// By default [`acquire`](Self::acquire) at `Instant::now()` without waiting.
    #[inline]
    fn check(&self, key: &K, cost: u32) -> Result<(), Denied> {
        self.acquire(key, cost, Instant::now(), Some(Duration::ZERO)).map(|_| ())
    }

    /// Whether [`acquire`](Self::acquire) may queue a request even when told not to wait
    /// (`max_wait` `None`), as a leaky bucket does; such stores are never asked through
    /// [`check`](Self::check) by a layer. Default `false`.
    fn queues(&self) -> bool {
        false
    }

    /// What [`acquire`](Self::acquire) would answer for `key` at `now`, booking nothing
    /// and making no key: a layer asks this of the tiers after one that refused a request,
    /// so that the `retry_after` it reports is when *every* tier admits the request. By
    /// default `Ok` (the store cannot tell; the refusing tiers' wait is reported).
    fn probe(&self, key: &K, cost: u32, now: Instant, max_wait: Option<Duration>) -> Result<(), Denied> {
        let _ = (key, cost, now, max_wait);
        Ok(())
    }

    /// Changes the quota of every key, held or new. By default the store cannot.
    fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        let _ = quota;
        Err(ConfigError::new("quota", "this store cannot change its quota at run time"))
    }

    /// New keys refused so far because the store was full of keys it could not forget.
    fn overflows(&self) -> u64 {
        0
    }

    /// Forgets every key whose state is back to a fresh key's; returns how many went (the
    /// handle's [`sweep`](crate::RateLimitHandle::sweep)).
    fn sweep(&self) -> usize {
        0
    }
}

/// An admission by a limit: when the request may go, and what a refund needs.
///
/// Not `Clone`, and [`KeyedStore::refund`] takes it by value, so one admission is given back
/// at most once:
///
/// ```compile_fail
/// # use palisade_rate_limit::store::Grant;
/// let grant = Grant::new(tokio::time::Instant::now(), 1);
/// let twice = grant.clone();
/// ```
pub struct Grant {
    ready_at: Instant,
    cost: u32,
    token: u64,
    mark: u64,
    slot: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("ready_at", &self.ready_at)
            .field("cost", &self.cost)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// An admission of `cost` that may proceed at `ready_at`.
    pub fn new(ready_at: Instant, cost: u32) -> Self {
        Self { ready_at, cost, token: 0, mark: 0, slot: None }
    }

    /// Attaches the in-memory token bucket's mark of credits given back before this
    /// admission (what its refund needs besides the token).
    #[must_use]
    pub(crate) fn with_mark(mut self, mark: u64) -> Self {
        self.mark = mark;
        self
    }

    /// Attaches a number the store needs for a refund.
    #[must_use]
    pub fn with_token(mut self, token: u64) -> Self {
        self.token = token;
        self
    }

    /// Attaches the state the store needs for a refund (e.g. the key's limiter).
    #[must_use]
    pub fn with_slot(mut self, slot: Arc<dyn Any + Send + Sync>) -> Self {
        self.slot = Some(slot);
        self
    }

    /// When the request may proceed.
    pub fn ready_at(&self) -> Instant {
        self.ready_at
    }

    /// The admitted cost.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The number attached with [`with_token`](Self::with_token).
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The state attached with [`with_slot`](Self::with_slot).
    pub fn slot(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.slot.as_ref()
    }

    /// What the algorithm needs to refund this admission, consuming it (an admission is
    /// given back once).
    pub(crate) fn into_admit(self) -> Admit {
        self.admit()
    }

    pub(crate) fn admit(&self) -> Admit {
        // `ready_at` is not needed to refund.
        Admit { ready_at: 0, token: self.token, mark: self.mark }
    }
}

/// One key's limiter in a [`LocalStore`].
#[derive(Debug)]
struct KeyCell {
    cell: Cell,
}

impl Forget for KeyCell {
    /// Nanoseconds in the store's clock.
    type Now = u64;

    fn can_forget(&self, now: u64) -> bool {
        self.cell.can_forget(now)
    }
}

/// The in-memory [`KeyedStore`]: a limiter per key in a bounded `KeyedMap`.
///
/// # Eviction and overflow
///
/// At most `max_keys` keys are held, exactly. A key is forgotten only when its limiter is
/// back to the state of a fresh key (token and leaky bucket: the theoretical arrival time
/// has passed, so no token is missing and nobody waits; windows: nothing counted in any
/// window that still matters) and no request holds its state — so forgetting a key can
/// never let a client past its limit. Keys are forgotten only when a new key arrives and
/// the map is full, never earlier. A key made after keys were forgotten starts at the time
/// they were forgotten: a request whose clock reading predates that (read before a lock,
/// applied after) is decided as the forgotten key would have decided it, or more strictly
/// — never as a key with no past.
///
/// When the map is full of keys that still constrain someone, a request for a *new* key is
/// refused with [`Denied::KeySetFull`] (the layer answers
/// [`KeySetFull`](palisade_core::rejection::KeySetFull), HTTP 503); keys already held are
/// served as usual. Size `max_keys` for the number of clients active within one refill
/// period. [`sweep`](Self::sweep) forgets every forgettable key at once.
///
/// # Clock
///
/// The store decides by its limiter's [`Clock`]. With tokio's (the default) the `now`
/// given to [`acquire`](KeyedStore::acquire), [`probe`](KeyedStore::probe) and
/// [`status`](KeyedStore::status) is the time of the decision (a reading older than one
/// already applied counts as that later one). With the fast clock (`Clock::quanta`, feature
/// `quanta`) the store reads its
/// own clock instead and `now` only anchors the returned [`Grant::ready_at`] (tokio's
/// instants and the time-stamp counter drift apart; mixing their readings would move a
/// key's time back and forth). Keys are never forgotten for a `now` later than the clock's.
pub struct LocalStore<K> {
    map: KeyedMap<K, KeyCell>,
    algorithm: Algorithm,
    quota: RwLock<QuotaFn<K>>,
    /// Serialises quota changes. Never held with `quota` locked: a new key's state is made
    /// under its shard's write lock and reads `quota`, so holding `quota` while walking the
    /// shards would deadlock against it.
    changing: Mutex<()>,
    epoch: Epoch,
    /// The latest time (store nanoseconds) at which keys may have been forgotten: new keys
    /// start there (`Cell::starting_at`), so a reading taken before a key was forgotten and
    /// applied after decides as the forgotten key would have, never as a key with no past.
    /// Raised before every scan that may forget keys, with that scan's time.
    forgot_at: AtomicU64,
}

type QuotaFn<K> = Arc<dyn Fn(&K) -> Quota + Send + Sync>;

impl<K> fmt::Debug for LocalStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore")
            .field("algorithm", &self.algorithm)
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> LocalStore<K> {
    pub(crate) fn new(algorithm: Algorithm, quota: QuotaFn<K>, max_keys: usize, clock: &Clock) -> Self {
        Self {
            map: KeyedMap::new(max_keys),
            algorithm,
            quota: RwLock::new(quota),
            changing: Mutex::new(()),
            epoch: clock.epoch(),
            forgot_at: AtomicU64::new(0),
        }
    }

    /// The most keys held.
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// New keys refused so far because every held key still constrained someone.
    pub fn overflows(&self) -> u64 {
        self.map.overflows()
    }

    /// Forgets every key whose limiter is back to a fresh key's state (and that no request
    /// holds); returns how many went.
    pub fn sweep(&self) -> usize {
        let now = self.epoch.now();
        self.forgot_at.fetch_max(now, Ordering::Relaxed);
        self.map.sweep(now)
    }

    /// The state of `key`, made if new; the map may forget keys at `now` to make room.
    #[inline(never)]
    fn insert(&self, key: &K, now: u64) -> Result<Arc<KeyCell>, Denied> {
        // A reading from the future (a caller's instant) must neither forget keys that
        // still constrain the present nor hold new keys back.
        let now = now.min(self.epoch.now());
        // Only a full map forgets keys (a scan when a new key finds no room): with room,
        // nothing is forgotten and the new key is a fresh key, whatever the reading. Raising
        // `forgot_at` for every new key made a key whose reading another new key's had
        // overtook start in its future (a first request refused). Should the map fill
        // meanwhile, its scan forgets only what the last time published allows.
        let scan_at = if self.map.len() >= self.map.capacity() {
            self.forgot_at.fetch_max(now, Ordering::Relaxed);
            now
        } else {
            now.min(self.forgot_at.load(Ordering::Relaxed))
        };
        self.map
            .get_or_insert_with(key, scan_at, || self.make(key))
            .map_err(|full| Denied::KeySetFull { capacity: full.capacity() })
    }

    fn make(&self, key: &K) -> KeyCell {
        let quota = palisade_core::sync::read(&self.quota).clone();
        let quota = quota(key);
        let quota = if quota.validate_for(self.algorithm, "quota").is_ok() {
            quota
        } else {
            // An invalid per-key quota blocks the key rather than panicking.
            Quota::new(0, Duration::from_secs(1)).burst(0)
        };
        // Ordered after every scan that forgot a key this one may replace: such a scan
        // raised `forgot_at` before taking the shard lock this runs under.
        KeyCell { cell: Cell::starting_at(self.algorithm, &quota, self.forgot_at.load(Ordering::Relaxed)) }
    }

    #[inline]
    fn grant(
        cell: &Arc<KeyCell>,
        cost: u32,
        now: Instant,
        now_nanos: u64,
        wait: Option<u64>,
    ) -> Result<Grant, Denied> {
        let admit = cell.cell.acquire(now_nanos, cost, wait)?;
        let ready = crate::limiter::ready_after(now, now_nanos, admit.ready_at);
        Ok(Grant::new(ready, cost).with_token(admit.token).with_mark(admit.mark).with_slot(cell.clone()))
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedStore<K> for LocalStore<K> {
    #[inline]
    fn acquire(&self, key: &K, cost: u32, now: Instant, max_wait: Option<Duration>) -> Result<Grant, Denied> {
        // The store's own clock: `now` with tokio's, a reading of its own with quanta's.
        let now_nanos = self.epoch.at_end(Some(now));
        let wait = wait_nanos(max_wait);
        if let Some(result) = self.map.with(key, |cell| Self::grant(cell, cost, now, now_nanos, wait)) {
            return result;
        }
        let cell = self.insert(key, now_nanos)?;
        Self::grant(&cell, cost, now, now_nanos, wait)
    }

    #[inline]
    fn check(&self, key: &K, cost: u32) -> Result<(), Denied> {
        let now = self.epoch.now();
        if let Some(result) = self.map.with(key, |cell| cell.cell.acquire(now, cost, Some(0))) {
            return result.map(|_| ());
        }
        let cell = self.insert(key, now)?;
        cell.cell.acquire(now, cost, Some(0)).map(|_| ())
    }

    fn queues(&self) -> bool {
        matches!(self.algorithm, Algorithm::LeakyBucket { .. })
    }

    fn probe(&self, key: &K, cost: u32, now: Instant, max_wait: Option<Duration>) -> Result<(), Denied> {
        let (now, wait) = (self.epoch.at_end(Some(now)), wait_nanos(max_wait));
        match self.map.with(key, |cell| cell.cell.probe(now, cost, wait)) {
            Some(answer) => answer,
            // A new key starts fresh: only its capacity can refuse (room for it is not
            // known before it is asked for).
            None => self.make(key).cell.probe(now, cost, wait),
        }
    }

    fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        quota.validate_for(self.algorithm, "quota")?;
        let _serial = palisade_core::sync::lock(&self.changing);
        // New keys are made with the new quota from here on (the write guard is released
        // at once) ...
        *palisade_core::sync::write(&self.quota) = Arc::new(move |_: &K| quota);
        // ... and every key held gets it: a key made with the old one had its shard locked
        // from reading the quota to its insertion, so this walk sees it.
        let now = self.epoch.now();
        self.map.for_each(|_, cell| cell.cell.set_quota(&quota, now));
        Ok(())
    }

    fn refund(&self, grant: Grant) {
        if let Some(cell) = grant.slot().and_then(|s| s.downcast_ref::<KeyCell>()) {
            cell.cell.refund(grant.admit(), grant.cost(), self.epoch.now());
        }
    }

    fn status(&self, key: &K, now: Instant) -> Option<Status> {
        self.map.with(key, |c| c.cell.status(self.epoch.at_end(Some(now))))
    }

    fn keys(&self) -> usize {
        self.map.len()
    }

    fn evictions(&self) -> u64 {
        self.map.evictions()
    }

    fn overflows(&self) -> u64 {
        self.map.overflows()
    }

    fn sweep(&self) -> usize {
        LocalStore::sweep(self)
    }
}
