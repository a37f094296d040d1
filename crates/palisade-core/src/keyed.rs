//! [`KeyedMap`]: per-key state with a hard bound on the number of keys.
//!
//! Keyed breakers, limiters and bulkheads keep one state per key derived from the request
//! (client IP, API key, host). Keys are chosen by whoever sends requests, so the map must
//! never grow with them: a `KeyedMap` holds at most `capacity` keys. When a shard is full, it
//! first drops keys idle longer than the idle timeout, then the least recently used eighth of
//! the shard — no background task and no manual `retain` call, and eviction cost is amortised
//! over the inserts that follow.
//!
//! Lookups of existing keys take a shard's read lock and bump an atomic timestamp; the map is
//! split into shards so threads rarely meet. Keys are hashed with std's randomly keyed
//! SipHash, so an attacker cannot aim keys at one shard.
//!
//! ```
//! use palisade_core::keyed::KeyedMap;
//!
//! let map: KeyedMap<u32, &str> = KeyedMap::new(2, None);
//! map.get_or_insert_with(&1, || "one");
//! map.get_or_insert_with(&2, || "two");
//! map.get_or_insert_with(&3, || "three"); // evicts the least recently used key
//! assert_eq!(map.len(), 2);
//! assert_eq!(map.evictions(), 1);
//! ```

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::time::Instant;

const MAX_SHARDS: usize = 16;

struct Slot<V> {
    value: Arc<V>,
    last_used: AtomicU64,
}

/// A bounded, sharded map from keys to shared per-key state; see the [module docs](self).
pub struct KeyedMap<K, V> {
    shards: Box<[RwLock<HashMap<K, Slot<V>>>]>,
    shard_capacity: usize,
    idle_timeout: Option<Duration>,
    hasher: RandomState,
    epoch: Instant,
    evictions: AtomicU64,
}

impl<K, V> fmt::Debug for KeyedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedMap")
            .field("capacity", &(self.shard_capacity * self.shards.len()))
            .field("idle_timeout", &self.idle_timeout)
            .field("evictions", &self.evictions.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K: Hash + Eq + Clone, V> KeyedMap<K, V> {
    /// A map holding at most `capacity` keys (at least 1); keys unused for `idle_timeout`
    /// are the first to go when room is needed.
    pub fn new(capacity: usize, idle_timeout: Option<Duration>) -> Self {
        let capacity = capacity.max(1);
        // Small maps get one shard so the bound is exact; large ones spread the lock.
        let shards = if capacity < 1024 { 1 } else { MAX_SHARDS };
        let shard_capacity = capacity.div_ceil(shards);
        Self {
            shards: (0..shards).map(|_| RwLock::new(HashMap::new())).collect(),
            shard_capacity,
            idle_timeout,
            hasher: RandomState::new(),
            epoch: Instant::now(),
            evictions: AtomicU64::new(0),
        }
    }

    /// The most keys the map will hold.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    /// `true` when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys evicted so far (idle or least recently used).
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &K) -> &RwLock<HashMap<K, Slot<V>>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        &self.shards[i]
    }

    /// The state for `key`, if the map holds it (marks it used).
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        self.get_at(key, Instant::now())
    }

    /// [`get`](Self::get) for a caller that already read the clock (saves a clock read).
    pub fn get_at(&self, key: &K, now: Instant) -> Option<Arc<V>> {
        let now = self.stamp(now);
        let shard = read(self.shard(key));
        shard.get(key).map(|slot| {
            slot.last_used.store(now, Ordering::Relaxed);
            slot.value.clone()
        })
    }

    /// The state for `key`, made with `make` if the map does not hold it yet (evicting to
    /// stay within capacity).
    pub fn get_or_insert_with<F: FnOnce() -> V>(&self, key: &K, make: F) -> Arc<V> {
        self.get_or_insert_with_at(key, Instant::now(), make)
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) for a caller that already read the
    /// clock (saves a clock read on the hot path).
    pub fn get_or_insert_with_at<F: FnOnce() -> V>(&self, key: &K, now: Instant, make: F) -> Arc<V> {
        if let Some(v) = self.get_at(key, now) {
            return v;
        }
        let now = self.stamp(now);
        let mut shard = write(self.shard(key));
        if let Some(slot) = shard.get(key) {
            slot.last_used.store(now, Ordering::Relaxed);
            return slot.value.clone();
        }
        if shard.len() >= self.shard_capacity {
            self.evict(&mut shard, now);
        }
        let value = Arc::new(make());
        shard.insert(key.clone(), Slot { value: value.clone(), last_used: AtomicU64::new(now) });
        value
    }

    fn evict(&self, shard: &mut HashMap<K, Slot<V>>, now: u64) {
        let before = shard.len();
        if let Some(idle) = self.idle_timeout {
            let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
            shard.retain(|_, slot| now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle);
        }
        if shard.len() >= self.shard_capacity {
            // Drop the least recently used eighth (at least one key).
            let drop = (self.shard_capacity / 8).max(1);
            let mut stamps: Vec<u64> = shard.values().map(|s| s.last_used.load(Ordering::Relaxed)).collect();
            let idx = drop.min(stamps.len()) - 1;
            let (_, cutoff, _) = stamps.select_nth_unstable(idx);
            let cutoff = *cutoff;
            let mut removed = 0;
            shard.retain(|_, slot| {
                if removed < drop && slot.last_used.load(Ordering::Relaxed) <= cutoff {
                    removed += 1;
                    false
                } else {
                    true
                }
            });
        }
        self.evictions.fetch_add((before - shard.len()) as u64, Ordering::Relaxed);
    }

    /// Removes `key`, returning its state.
    pub fn remove(&self, key: &K) -> Option<Arc<V>> {
        write(self.shard(key)).remove(key).map(|s| s.value)
    }

    /// Calls `f` with every key and its state (holding one shard's read lock at a time).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in &*self.shards {
            for (k, slot) in read(shard).iter() {
                f(k, &slot.value);
            }
        }
    }

    /// Removes every key.
    pub fn clear(&self) {
        for shard in &*self.shards {
            write(shard).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn flood_of_distinct_keys_stays_bounded() {
        let map: KeyedMap<u64, u64> = KeyedMap::new(10_000, Some(Duration::from_secs(60)));
        for k in 0..200_000u64 {
            map.get_or_insert_with(&k, || k);
            assert!(map.len() <= map.capacity());
        }
        assert!(map.evictions() >= 190_000);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_go_first_and_recent_keys_stay() {
        let map: KeyedMap<u32, u32> = KeyedMap::new(3, Some(Duration::from_secs(10)));
        map.get_or_insert_with(&1, || 1);
        map.get_or_insert_with(&2, || 2);
        tokio::time::advance(Duration::from_secs(11)).await;
        map.get_or_insert_with(&3, || 3);
        map.get(&2); // 2 is fresh again, 1 stays idle
        map.get_or_insert_with(&4, || 4);
        assert!(map.get(&1).is_none());
        assert!(map.get(&2).is_some());
        assert!(map.get(&3).is_some());
        assert!(map.get(&4).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn least_recently_used_is_evicted() {
        let map: KeyedMap<u32, u32> = KeyedMap::new(2, None);
        map.get_or_insert_with(&1, || 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        map.get_or_insert_with(&2, || 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        map.get(&1);
        tokio::time::advance(Duration::from_millis(1)).await;
        map.get_or_insert_with(&3, || 3);
        assert!(map.get(&2).is_none(), "2 was least recently used");
        assert_eq!(*map.get(&1).unwrap_or_default(), 1);
        assert_eq!(map.evictions(), 1);
    }
}
