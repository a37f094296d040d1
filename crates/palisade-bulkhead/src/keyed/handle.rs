//! The handle to a keyed bulkhead's pools and its snapshot.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use palisade_core::config::ConfigError;
use palisade_core::WhenFull;

use super::KeyedShared;
use crate::config::check_runtime_max;
use crate::event::BulkheadEvent;
use crate::handle::BulkheadSnapshot;

/// A handle to a keyed bulkhead's pools.
pub struct KeyedBulkheadHandle<K, F> {
    pub(super) shared: Arc<KeyedShared<K, F>>,
}

impl<K, F> Clone for KeyedBulkheadHandle<K, F> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<K, F> fmt::Debug for KeyedBulkheadHandle<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadHandle").field("common", &self.shared.common).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, F> KeyedBulkheadHandle<K, F> {
    /// Permits per key now.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_concurrent.load(Ordering::Acquire)
    }

    /// Changes the permits of every key, held now or new later, as
    /// [`BulkheadHandle::set_max_concurrent`](crate::BulkheadHandle::set_max_concurrent)
    /// does for one: a key with more calls in flight than `n` lets them finish and admits
    /// none until it is below `n`; a key raised hands the new permits to its waiters in
    /// order. Zero admits nothing until raised again.
    ///
    /// # Errors
    ///
    /// `n` above `tokio::sync::Semaphore::MAX_PERMITS`; nothing changes then.
    pub fn set_max_concurrent(&self, n: usize) -> Result<(), ConfigError> {
        check_runtime_max(n)?;
        let _serial = palisade_core::sync::lock(&self.shared.resizing);
        // New keys get `n` from here on; a key made just before had its shard locked until
        // it was inserted, so the walk below sees it.
        self.shared.max_concurrent.store(n, Ordering::Release);
        let mut result = self.shared.unkeyed.set_max_concurrent(n);
        self.shared.map.for_each(|_, c| {
            if let Err(e) = c.set_max_concurrent(n) {
                result = Err(e);
            }
        });
        result
    }

    /// What a caller does when its key's permits are all taken now.
    pub fn when_full(&self) -> WhenFull {
        self.shared.common.when_full()
    }

    /// Changes what callers do when their key's permits are all taken, for every key, for
    /// callers that start waiting from now on (those already waiting keep their deadline).
    pub fn set_when_full(&self, when_full: WhenFull) {
        self.shared.common.set_when_full(when_full);
    }

    /// How many callers may wait per key (`None`: no bound).
    pub fn max_queue(&self) -> Option<usize> {
        self.shared.common.max_queue()
    }

    /// Changes how many callers may wait per key, for callers arriving from now on.
    pub fn set_max_queue(&self, max_queue: Option<usize>) {
        self.shared.common.set_max_queue(max_queue);
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.shared.map.len()
    }

    /// The most keys held.
    pub fn max_keys(&self) -> usize {
        self.shared.map.capacity()
    }

    /// Keys forgotten so far, to make room or by [`sweep`](Self::sweep) (each held no permit
    /// and had nobody waiting).
    pub fn evictions(&self) -> u64 {
        self.shared.map.evictions()
    }

    /// Calls for new keys refused so far because every held key was in use.
    pub fn overflows(&self) -> u64 {
        self.shared.map.overflows()
    }

    /// Forgets every key with no permit held and nobody waiting; returns how many went.
    pub fn sweep(&self) -> usize {
        self.shared.map.sweep(())
    }

    /// Permits held for `key` now (zero for a key not held).
    pub fn in_flight(&self, key: &K) -> usize {
        self.shared.map.get(key).map_or(0, |c| c.in_flight())
    }

    /// Callers waiting for `key` now.
    pub fn queued(&self, key: &K) -> usize {
        self.shared.map.get(key).map_or(0, |c| c.queued())
    }

    /// Calls `f` with every event (of every key) from now on.
    pub fn on_event<OnEvent>(&self, f: OnEvent)
    where
        OnEvent: Fn(&BulkheadEvent) + Send + Sync + 'static,
    {
        self.shared.common.events.subscribe(f);
    }

    /// The counters over all keys, `in_flight` and `queued` summed over the keys held now
    /// (and the shared compartment of unkeyed requests), and the key set's numbers.
    pub fn snapshot(&self) -> KeyedBulkheadSnapshot {
        let unkeyed = &self.shared.unkeyed;
        let mut in_flight = unkeyed.in_flight();
        let mut queued = unkeyed.queued();
        self.shared.map.for_each(|_, c| {
            in_flight += c.in_flight();
            queued += c.queued();
        });
        KeyedBulkheadSnapshot {
            total: self.shared.common.snapshot(self.max_concurrent(), in_flight, queued),
            keys: self.keys(),
            max_keys: self.max_keys(),
            evictions: self.evictions(),
            overflows: self.overflows(),
        }
    }
}

/// A keyed bulkhead's numbers at one moment, from [`KeyedBulkheadHandle::snapshot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedBulkheadSnapshot {
    /// The bulkhead's numbers over every key: `max_concurrent` is per key, `in_flight` and
    /// `queued` are summed over the keys held now, the counters count every key.
    pub total: BulkheadSnapshot,
    /// Keys held now.
    pub keys: usize,
    /// The most keys held.
    pub max_keys: usize,
    /// Keys forgotten so far, to make room or by a sweep.
    pub evictions: u64,
    /// Calls for new keys refused so far because every held key was in use.
    pub overflows: u64,
}
