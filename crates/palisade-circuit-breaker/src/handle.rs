//! Handles: read a breaker's state and metrics, set manual states, subscribe to events.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use palisade_core::keyed::KeyedMap;

use crate::event::{CircuitBreakerEvent, TransitionReason};
use crate::state::{Breaker, CoreAccess, LayerShared, Snapshot, State};

/// Reads and steers one breaker; from [`CircuitBreakerLayer::handle`](crate::CircuitBreakerLayer::handle)
/// or [`KeyedCircuitBreakerHandle::get`].
///
/// # Clone
///
/// Clones steer the same breaker as the layer and every service built from it.
///
/// # Manual states
///
/// | method | calls | results recorded | opens by itself |
/// |---|---|---|---|
/// | [`force_open`](Self::force_open) | rejected | — | stays open until another manual state |
/// | [`force_closed`](Self::force_closed) | pass | yes, in a fresh window | yes (automatic operation resumes) |
/// | [`disable`](Self::disable) | pass | no | no |
/// | [`metrics_only`](Self::metrics_only) | pass | yes | no |
/// | [`reset`](Self::reset) | pass | yes, in a fresh window | yes; the exponential wait starts over |
///
/// Counters in the [`Snapshot`] only ever grow (they are exported as metrics counters).
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    breaker: Arc<dyn CoreAccess>,
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreakerHandle {
    pub(crate) fn new(breaker: Arc<dyn CoreAccess>) -> Self {
        Self { breaker }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        self.breaker.core().name()
    }

    /// The current state. An open breaker whose wait is over still reads `Open` until the
    /// next call moves it to half-open.
    pub fn state(&self) -> State {
        self.breaker.core().state()
    }

    /// State, window rates and counters, read without locking (the window's aggregate is
    /// kept up to date by every call; reading it is O(1)).
    pub fn snapshot(&self) -> Snapshot {
        self.breaker.core().snapshot()
    }

    /// Rejects every call until another manual state is set.
    pub fn force_open(&self) {
        self.breaker.core().transition(None, State::ForcedOpen, TransitionReason::Manual);
    }

    /// Closes the breaker now with a fresh window; it may open again by itself.
    pub fn force_closed(&self) {
        self.breaker.core().transition(None, State::Closed, TransitionReason::Manual);
    }

    /// Lets every call through and records nothing, until another manual state is set.
    pub fn disable(&self) {
        self.breaker.core().transition(None, State::Disabled, TransitionReason::Manual);
    }

    /// Lets every call through and records results (rates stay visible) without ever
    /// opening, until another manual state is set.
    pub fn metrics_only(&self) {
        self.breaker.core().transition(None, State::MetricsOnly, TransitionReason::Manual);
    }

    /// Back to the initial state: closed, empty window, first wait in open state.
    pub fn reset(&self) {
        self.breaker.core().transition(None, State::Closed, TransitionReason::Reset);
    }

    /// Calls `f` with every event of this breaker's layer from now on.
    pub fn subscribe<F>(&self, f: F)
    where
        F: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.breaker.core().events().subscribe(f);
    }
}

/// The keyed map, whatever the classifier.
pub(crate) trait KeyedAccess<K>: Send + Sync {
    fn get(&self, key: &K) -> Option<Arc<dyn CoreAccess>>;
    fn keys(&self) -> Vec<K>;
    fn snapshots(&self) -> Vec<(K, Snapshot)>;
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn evictions(&self) -> u64;
    fn remove(&self, key: &K) -> bool;
    fn clear(&self);
}

impl<K, C> KeyedAccess<K> for KeyedMap<K, Breaker<Arc<C>>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    fn get(&self, key: &K) -> Option<Arc<dyn CoreAccess>> {
        KeyedMap::get(self, key).map(|b| b as Arc<dyn CoreAccess>)
    }

    fn keys(&self) -> Vec<K> {
        let mut keys = Vec::new();
        self.for_each(|k, _| keys.push(k.clone()));
        keys
    }

    fn snapshots(&self) -> Vec<(K, Snapshot)> {
        let mut all = Vec::new();
        self.for_each(|k, b| all.push((k.clone(), b.core.snapshot())));
        all
    }

    fn len(&self) -> usize {
        KeyedMap::len(self)
    }

    fn capacity(&self) -> usize {
        KeyedMap::capacity(self)
    }

    fn evictions(&self) -> u64 {
        KeyedMap::evictions(self)
    }

    fn remove(&self, key: &K) -> bool {
        KeyedMap::remove(self, key).is_some()
    }

    fn clear(&self) {
        KeyedMap::clear(self);
    }
}

/// Reads and steers the breakers of a [`KeyedCircuitBreakerLayer`](crate::KeyedCircuitBreakerLayer).
///
/// # Clone
///
/// Clones see the same breakers as the layer and every service built from it.
pub struct KeyedCircuitBreakerHandle<K> {
    map: Arc<dyn KeyedAccess<K>>,
    shared: Arc<LayerShared>,
}

impl<K> Clone for KeyedCircuitBreakerHandle<K> {
    fn clone(&self) -> Self {
        Self { map: self.map.clone(), shared: self.shared.clone() }
    }
}

impl<K> fmt::Debug for KeyedCircuitBreakerHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerHandle")
            .field("name", &self.shared.events.name())
            .field("keys", &self.map.len())
            .field("capacity", &self.map.capacity())
            .finish()
    }
}

impl<K> KeyedCircuitBreakerHandle<K> {
    pub(crate) fn new(map: Arc<dyn KeyedAccess<K>>, shared: Arc<LayerShared>) -> Self {
        Self { map, shared }
    }

    /// The breaker of `key`, if a call created it and it was not evicted since.
    pub fn get(&self, key: &K) -> Option<CircuitBreakerHandle> {
        self.map.get(key).map(CircuitBreakerHandle::new)
    }

    /// The keys held now.
    pub fn keys(&self) -> Vec<K> {
        self.map.keys()
    }

    /// Every key held now with its breaker's snapshot (e.g. to list the open hosts).
    pub fn snapshots(&self) -> Vec<(K, Snapshot)> {
        self.map.snapshots()
    }

    /// Number of keys held now (at most [`capacity`](Self::capacity)).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// `true` when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys held at once.
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// Keys evicted so far to stay within capacity.
    pub fn evictions(&self) -> u64 {
        self.map.evictions()
    }

    /// Forgets the breaker of `key` (the next call creates a fresh one); `true` if it was held.
    pub fn remove(&self, key: &K) -> bool {
        self.map.remove(key)
    }

    /// Forgets every breaker.
    pub fn clear(&self) {
        self.map.clear();
    }

    /// Calls `f` with every event of every key's breaker from now on.
    pub fn subscribe<F>(&self, f: F)
    where
        F: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.shared.events.subscribe(f);
    }
}
