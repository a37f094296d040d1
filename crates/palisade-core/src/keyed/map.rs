//! [`KeyedMap`]: per-key state with an exact bound on the number of keys, which never
//! forgets a key that still constrains anyone (the semantics are in the
//! [`keyed`](super) module docs).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{lock, read, write};

const MAX_SHARDS: usize = 16;
/// A full map scans again after `len / SCAN_DEBT` new keys …
const SCAN_DEBT: usize = 16;
/// … or after this long.
const SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// Per-key state that can tell when forgetting it changes nothing; see the
/// [`keyed`](super) module docs.
#[doc(hidden)] // sibling crates only: `palisade_core::__private`
pub trait Forget {
    /// What the state needs to decide, typically the current time in the layer's clock
    /// (`()` when time does not matter).
    type Now: Copy;

    /// `true` when dropping this state now and starting the key afresh later would make
    /// exactly the same decisions as keeping it.
    fn can_forget(&self, now: Self::Now) -> bool;
}

/// A new key was refused: the map is full of keys that may not be forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)] // sibling crates only: `palisade_core::__private`
pub struct Full {
    capacity: usize,
}

impl Full {
    /// The map's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} keys are in use; new key refused", self.capacity)
    }
}

impl std::error::Error for Full {}

/// One shard: its lock and table on cache lines of their own, so that readers of one shard
/// (each read lock writes the lock word) do not slow down readers of its neighbour.
#[repr(align(128))]
struct Shard<K, V>(RwLock<HashMap<K, Arc<V>, RandomState>>);

/// Picks a shard: FxHash's multiply-rotate, a few cycles per word.
struct ShardHasher(u64);

impl Hasher for ShardHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// When the last scan of a full map ran.
#[derive(Debug)]
struct Scan {
    at: Option<Instant>,
}

/// A bounded, sharded map from keys to shared per-key state; see the [`keyed`](super)
/// module docs. Its [`sweep`](Self::sweep) drops every forgettable key at once, for users
/// who want to trim; [`get_or_insert_with`](Self::get_or_insert_with) answers [`Full`] when
/// a new key finds the map full of keys that may not be forgotten.
///
/// ```
/// use palisade_core::keyed::{Forget, KeyedMap};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// /// Calls in flight for one key; forgettable when none is.
/// #[derive(Default)]
/// struct InFlight(AtomicU32);
///
/// impl Forget for InFlight {
///     type Now = ();
///     fn can_forget(&self, (): ()) -> bool {
///         self.0.load(Ordering::Acquire) == 0
///     }
/// }
///
/// let map: KeyedMap<u32, InFlight> = KeyedMap::new(2);
/// map.get_or_insert_with(&1, (), InFlight::default).unwrap().0.store(1, Ordering::Release);
/// map.get_or_insert_with(&2, (), InFlight::default).unwrap();
/// // Full: key 2 is idle and goes, key 1 still has a call in flight and stays.
/// map.get_or_insert_with(&3, (), InFlight::default).unwrap();
/// assert!(map.get(&1).is_some() && map.get(&2).is_none());
/// // Now both held keys are busy: a fourth key is refused, nothing is reset.
/// map.get(&3).unwrap().0.store(1, Ordering::Release);
/// assert!(map.get_or_insert_with(&4, (), InFlight::default).is_err());
/// assert_eq!((map.len(), map.capacity(), map.evictions(), map.overflows()), (2, 2, 1, 1));
/// ```
#[doc(hidden)] // sibling crates only: `palisade_core::__private`
pub struct KeyedMap<K, V> {
    shards: Box<[Shard<K, V>]>,
    capacity: usize,
    len: AtomicUsize,
    evictions: AtomicU64,
    overflows: AtomicU64,
    /// New keys (inserted or refused) since the last scan.
    new_keys: AtomicUsize,
    scan: Mutex<Scan>,
}

impl<K, V> fmt::Debug for KeyedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedMap")
            .field("capacity", &self.capacity)
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("evictions", &self.evictions.load(Ordering::Relaxed))
            .field("overflows", &self.overflows.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V> KeyedMap<K, V> {
    /// A map holding at most `capacity` keys (at least 1). Memory grows with the keys held,
    /// not with `capacity`.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // Small maps get one shard; large ones spread the lock.
        let shards = if capacity < 1024 { 1 } else { MAX_SHARDS };
        Self {
            // One random SipHash key for every shard (each `RandomState::new` on a thread
            // after the first only bumps the key, which is as good).
            shards: (0..shards)
                .map(|_| Shard(RwLock::new(HashMap::with_hasher(RandomState::new()))))
                .collect(),
            capacity,
            len: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            new_keys: AtomicUsize::new(0),
            scan: Mutex::new(Scan { at: None }),
        }
    }

    /// The most keys the map will hold (exactly the `capacity` it was made with).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// `true` when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys forgotten so far to make room (not counting [`remove`](Self::remove),
    /// [`retain`](Self::retain) and [`clear`](Self::clear)).
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// New keys refused so far because the map was full of keys that may not be forgotten.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    #[inline]
    fn shard(&self, key: &K) -> &RwLock<HashMap<K, Arc<V>, RandomState>> {
        if self.shards.len() == 1 {
            return &self.shards[0].0;
        }
        let mut h = ShardHasher(0);
        key.hash(&mut h);
        // The high bits of a multiplicative hash are the well mixed ones.
        let i = (h.0 >> 60) as usize % self.shards.len();
        &self.shards[i].0
    }

    /// The state for `key`, if the map holds it.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        read(self.shard(key)).get(key).cloned()
    }

    /// Runs `f` on the state for `key` under the shard's read lock, without cloning the
    /// `Arc` (the fast path of a check that keeps nothing).
    #[inline]
    pub fn with<R>(&self, key: &K, f: impl FnOnce(&Arc<V>) -> R) -> Option<R> {
        read(self.shard(key)).get(key).map(f)
    }

    /// Removes `key`, returning its state (whatever it holds: the key starts afresh).
    pub fn remove(&self, key: &K) -> Option<Arc<V>> {
        let removed = write(self.shard(key)).remove(key);
        if removed.is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// Calls `f` with every key and its state (holding one shard's read lock at a time).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in &*self.shards {
            for (k, v) in read(&shard.0).iter() {
                f(k, v);
            }
        }
    }

    /// Keeps only the keys for which `keep` returns `true` and returns how many were
    /// removed. Unlike [`sweep`](Self::sweep) this may drop keys that still constrain
    /// someone (they start afresh): it is the caller's decision.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) -> usize {
        let mut removed = 0;
        for shard in &*self.shards {
            let mut shard = write(&shard.0);
            let before = shard.len();
            shard.retain(|k, v| keep(k, v));
            removed += before - shard.len();
        }
        self.len.fetch_sub(removed, Ordering::AcqRel);
        removed
    }

    /// Removes every key.
    pub fn clear(&self) {
        for shard in &*self.shards {
            let mut shard = write(&shard.0);
            self.len.fetch_sub(shard.len(), Ordering::AcqRel);
            shard.clear();
        }
    }

    /// Takes one place if the map has room.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1))
            .is_ok()
    }
}

/// A place taken in the map's count, given back when dropped (on unwind).
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<K: Hash + Eq + Clone, V: Forget> KeyedMap<K, V> {
    /// Whether `value`, held by the map, may be forgotten: its state says so and nobody
    /// else holds it.
    fn forgettable(value: &Arc<V>, now: V::Now) -> bool {
        Arc::strong_count(value) == 1 && value.can_forget(now)
    }

    /// The state for `key`, made with `make` if the map does not hold it yet. When the map
    /// is full, forgettable keys make room; when none can, the new key is refused with
    /// [`Full`] (see the [`keyed`](super) module docs).
    pub fn get_or_insert_with<F: FnOnce() -> V>(
        &self,
        key: &K,
        now: V::Now,
        make: F,
    ) -> Result<Arc<V>, Full> {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let mut make = Some(make);
        for attempt in 0..2 {
            {
                let mut shard = write(self.shard(key));
                if let Some(v) = shard.get(key) {
                    return Ok(v.clone());
                }
                if self.reserve() {
                    self.new_keys.fetch_add(1, Ordering::Relaxed);
                    // The place is given back if `make` (user code: a key's quota, its
                    // name) panics, so a panic never shrinks the map for good.
                    let place = Place(&self.len);
                    let Some(make) = make.take() else { break };
                    let value = Arc::new(make());
                    shard.insert(key.clone(), value.clone());
                    std::mem::forget(place);
                    return Ok(value);
                }
            }
            if attempt == 0 && !self.scan_when_due(now) {
                break;
            }
        }
        self.overflows.fetch_add(1, Ordering::Relaxed);
        self.new_keys.fetch_add(1, Ordering::Relaxed);
        Err(Full { capacity: self.capacity })
    }

    /// Scans a full map for forgettable keys if a scan is due; `true` if room was made.
    fn scan_when_due(&self, now: V::Now) -> bool {
        {
            let mut scan = lock(&self.scan);
            let clock = Instant::now();
            let due = scan.at.is_none_or(|at| clock.saturating_duration_since(at) >= SCAN_INTERVAL)
                || self.new_keys.load(Ordering::Relaxed).saturating_mul(SCAN_DEBT) >= self.len();
            if !due {
                return false;
            }
            scan.at = Some(clock);
            self.new_keys.store(0, Ordering::Relaxed);
        }
        self.sweep(now) > 0
    }

    /// Forgets every key whose state may be forgotten (see the [`keyed`](super) module docs) and
    /// returns how many went. The map does this by itself when it is full; call it to
    /// trim memory earlier.
    pub fn sweep(&self, now: V::Now) -> usize {
        let mut removed = 0;
        for shard in &*self.shards {
            let mut shard = write(&shard.0);
            let before = shard.len();
            shard.retain(|_, v| !Self::forgettable(v, now));
            removed += before - shard.len();
        }
        self.len.fetch_sub(removed, Ordering::AcqRel);
        self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A state that may be forgotten once released.
    #[derive(Default)]
    struct Held(AtomicBool);

    impl Forget for Held {
        type Now = ();
        fn can_forget(&self, (): ()) -> bool {
            !self.0.load(Ordering::Relaxed)
        }
    }

    /// Forgettable from a given time on.
    struct Until(u64);

    impl Forget for Until {
        type Now = u64;
        fn can_forget(&self, now: u64) -> bool {
            self.0 <= now
        }
    }

    #[test]
    fn capacity_is_exact() {
        for cap in [1, 2, 1023, 1024, 1500, 100_000] {
            let map: KeyedMap<u64, Held> = KeyedMap::new(cap);
            assert_eq!(map.capacity(), cap);
        }
        let map: KeyedMap<u64, Held> = KeyedMap::new(1500);
        for k in 0..1500 {
            map.get_or_insert_with(&k, (), || Held(AtomicBool::new(true))).unwrap();
        }
        assert_eq!(map.len(), 1500);
        assert!(map.get_or_insert_with(&1500, (), Held::default).is_err());
        assert_eq!(map.len(), 1500);
    }

    #[tokio::test(start_paused = true)]
    async fn never_evicts_while_there_is_room() {
        let map: KeyedMap<u64, Until> = KeyedMap::new(100_000);
        for k in 0..100_000 {
            map.get_or_insert_with(&k, 0, || Until(0)).unwrap();
        }
        assert_eq!((map.len(), map.evictions()), (100_000, 0), "every key fits: none forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn flood_of_distinct_keys_stays_bounded() {
        let map: KeyedMap<u64, Until> = KeyedMap::new(10_000);
        // Half the flood is forgettable at once, half never.
        for k in 0..200_000u64 {
            let _ = map.get_or_insert_with(&k, 1, || Until(if k % 2 == 0 { 0 } else { u64::MAX }));
            assert!(map.len() <= map.capacity());
        }
        assert_eq!(map.len(), 10_000);
        map.for_each(|_, v| assert_eq!(v.0, u64::MAX, "only unforgettable keys remain once full"));
    }

    #[tokio::test(start_paused = true)]
    async fn unforgettable_keys_are_kept_and_new_keys_refused() {
        let map: KeyedMap<u32, Until> = KeyedMap::new(2);
        map.get_or_insert_with(&1, 0, || Until(10)).unwrap();
        map.get_or_insert_with(&2, 0, || Until(20)).unwrap();
        assert_eq!(map.get_or_insert_with(&3, 5, || Until(0)).err().map(|f| f.capacity()), Some(2));
        tokio::time::advance(SCAN_INTERVAL).await;
        map.get_or_insert_with(&3, 15, || Until(0)).unwrap();
        assert!(map.get(&1).is_none(), "1 was forgettable at 15");
        assert!(map.get(&2).is_some());
        assert_eq!((map.evictions(), map.overflows()), (1, 1));
    }

    /// Review: a `make` that panics (user code: a per-key quota, a key's name) gives its
    /// place back; before, each panic shrank the map by one key for good.
    #[test]
    fn a_panicking_make_gives_its_place_back() {
        let map: KeyedMap<u32, Held> = KeyedMap::new(2);
        for k in 0..5 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                map.get_or_insert_with(&k, (), || panic!("make panicked"))
            }));
            assert!(r.is_err());
        }
        assert_eq!(map.len(), 0);
        map.get_or_insert_with(&1, (), || Held(AtomicBool::new(true))).unwrap();
        map.get_or_insert_with(&2, (), || Held(AtomicBool::new(true))).unwrap();
        assert_eq!(map.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_held_elsewhere_is_not_forgotten() {
        let map: KeyedMap<u32, Held> = KeyedMap::new(1);
        let held = map.get_or_insert_with(&1, (), Held::default).unwrap();
        assert!(map.get_or_insert_with(&2, (), Held::default).is_err());
        assert_eq!(map.sweep(()), 0);
        drop(held);
        assert_eq!(map.sweep(()), 1);
        assert!(map.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_map_rescans_after_enough_refusals_or_time() {
        let map: KeyedMap<u64, Until> = KeyedMap::new(32);
        for k in 0..32 {
            map.get_or_insert_with(&k, 0, || Until(5)).unwrap();
        }
        assert!(map.get_or_insert_with(&100, 0, || Until(0)).is_err(), "first scan finds nothing");
        // Forgettable now, but the next scan is not due before 32 / 16 = 2 new keys.
        assert!(map.get_or_insert_with(&101, 5, || Until(0)).is_err());
        assert!(map.get_or_insert_with(&102, 5, || Until(0)).is_ok());
        assert_eq!(map.len(), 1, "the scan forgot all 32");
    }

    #[test]
    fn retain_and_remove_keep_the_count() {
        let map: KeyedMap<u32, Held> = KeyedMap::new(4);
        for k in 0..4 {
            map.get_or_insert_with(&k, (), || Held(AtomicBool::new(true))).unwrap();
        }
        assert_eq!(map.retain(|k, _| k % 2 == 0), 2);
        assert!(map.remove(&0).is_some());
        assert_eq!(map.len(), 1);
        map.clear();
        assert_eq!(map.len(), 0);
        for k in 10..14 {
            map.get_or_insert_with(&k, (), Held::default).unwrap();
        }
        assert_eq!(map.len(), 4);
    }
}
