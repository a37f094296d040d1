//! [`CircuitBreakerHandle`] and [`CircuitBreakerSnapshot`] (and their keyed forms): read a
//! breaker's state and metrics, set manual states, listen to events.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::__private::KeyedMap;

use crate::breaker::{Breaker, CoreAccess, LayerShared};
use crate::event::{guarded, CircuitBreakerEvent, TransitionReason};
use crate::state::CircuitState;

/// A point-in-time view of one breaker, from its handle.
///
/// While half-open, the window fields show the trials of this half-open period (as
/// Resilience4j, whose metrics start afresh on entering half-open): `window_calls` are the
/// trials that ended, `window_failures` the failed or slow ones.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerSnapshot {
    /// The current state.
    pub state: CircuitState,
    /// Failures / calls in the window, once it holds the minimum number of calls (half-open:
    /// failed / ended trials, once one ended).
    pub failure_rate: Option<f64>,
    /// Slow calls / calls in the window, once it holds the minimum number of calls (and
    /// slow calls are detected). Not kept apart while half-open (a slow trial is a failed
    /// one).
    pub slow_call_rate: Option<f64>,
    /// Calls in the window (0 without a window: consecutive mode).
    pub window_calls: u64,
    /// Failed calls in the window.
    pub window_failures: u64,
    /// Slow calls in the window.
    pub window_slow_calls: u64,
    /// Failures in a row (consecutive mode).
    pub consecutive_failures: u64,
    /// Successful calls since the breaker was built.
    pub successes: u64,
    /// Failed calls since the breaker was built.
    pub failures: u64,
    /// Slow calls since the breaker was built.
    pub slow_calls: u64,
    /// Calls classified as neither success nor failure, or dropped before they ended.
    pub ignored: u64,
    /// Calls rejected by the breaker since it was built.
    pub rejected: u64,
    /// Calls rejected since the breaker entered its current state (Resilience4j's
    /// `numberOfNotPermittedCalls`, which starts over with each state).
    pub rejected_in_state: u64,
    /// Times the breaker opened (automatically, not by hand).
    pub times_opened: u64,
    /// When open: time until trial calls are let through.
    pub retry_after: Option<Duration>,
    /// When half-open: trial calls in flight.
    pub trials_in_flight: u16,
    /// When half-open: trial calls that succeeded.
    pub trial_successes: u16,
    /// When half-open: trial calls that failed.
    pub trial_failures: u16,
}

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
/// | [`force_open`](Self::force_open) | rejected ([`CircuitOpen::is_isolated`](palisade_core::rejection::CircuitOpen::is_isolated)) | — | stays open until another manual state |
/// | [`open_for`](Self::open_for) / [`open_until`](Self::open_until) | rejected | — | half-open after the given time, as usual |
/// | [`force_closed`](Self::force_closed) | pass | yes, in a fresh window | yes (automatic operation resumes; the exponential wait starts over) |
/// | [`disable`](Self::disable) | pass | no | no |
/// | [`metrics_only`](Self::metrics_only) | pass | yes | no |
/// | [`reset`](Self::reset) | pass | yes, in a fresh window | yes; the exponential wait starts over |
///
/// Setting the state the breaker is already in does nothing and publishes no event
/// (Resilience4j publishes none either). Counters in the [`CircuitBreakerSnapshot`] only ever grow (they
/// are exported as metrics counters), except `rejected_in_state`.
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
    pub fn state(&self) -> CircuitState {
        self.breaker.core().state()
    }

    /// CircuitState, window rates and counters, read without locking (the window's aggregate is
    /// kept up to date by every call; reading it is O(1)).
    pub fn snapshot(&self) -> CircuitBreakerSnapshot {
        self.breaker.core().snapshot()
    }

    /// Rejects every call until another manual state is set.
    pub fn force_open(&self) {
        self.breaker.core().transition(None, CircuitState::ForcedOpen, TransitionReason::Manual);
    }

    /// Opens the breaker now for `duration` (saturating: `Duration::MAX` is about 30 years),
    /// then lets trials through as after any open wait (Resilience4j's
    /// `transitionToOpenStateFor`). The wait level of the exponential wait is not touched.
    pub fn open_for(&self, duration: std::time::Duration) {
        self.open_until(palisade_core::time::deadline_from_now(duration));
    }

    /// Opens the breaker now until `deadline` (tokio time), then lets trials through as after
    /// any open wait (Resilience4j's `transitionToOpenStateUntil`).
    pub fn open_until(&self, deadline: tokio::time::Instant) {
        self.breaker.core().open_until(deadline);
    }

    /// Closes the breaker now with a fresh window and the first open wait (the exponential
    /// wait starts over, as in Resilience4j and Polly); it may open again by itself.
    pub fn force_closed(&self) {
        self.breaker.core().transition(None, CircuitState::Closed, TransitionReason::Manual);
    }

    /// Lets every call through and records nothing, until another manual state is set.
    pub fn disable(&self) {
        self.breaker.core().transition(None, CircuitState::Disabled, TransitionReason::Manual);
    }

    /// Lets every call through and records results (rates stay visible) without ever
    /// opening, until another manual state is set.
    pub fn metrics_only(&self) {
        self.breaker.core().transition(None, CircuitState::MetricsOnly, TransitionReason::Manual);
    }

    /// Back to the initial state (closed, unless configured otherwise), empty window, first
    /// wait in open state. Publishes [`CircuitBreakerEvent::Reset`] (after a transition
    /// event if the state changed).
    pub fn reset(&self) {
        self.breaker.core().reset();
    }

    /// Calls `f` with every event of this breaker's layer from now on. A listener that
    /// panics is caught and logged.
    pub fn on_event<OnEvent>(&self, f: OnEvent)
    where
        OnEvent: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.breaker.core().shared().listen(guarded(f));
    }
}

/// The keyed map, whatever the classifier.
pub(crate) trait KeyedAccess<K>: Send + Sync {
    fn get(&self, key: &K) -> Option<Arc<dyn CoreAccess>>;
    fn keys(&self) -> Vec<K>;
    fn snapshots(&self) -> Vec<(K, CircuitBreakerSnapshot)>;
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn evictions(&self) -> u64;
    fn overflows(&self) -> u64;
    fn sweep(&self) -> usize;
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

    fn snapshots(&self) -> Vec<(K, CircuitBreakerSnapshot)> {
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

    fn overflows(&self) -> u64 {
        KeyedMap::overflows(self)
    }

    fn sweep(&self) -> usize {
        KeyedMap::sweep(self, tokio::time::Instant::now())
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
    unkeyed: Option<Arc<dyn CoreAccess>>,
}

impl<K> Clone for KeyedCircuitBreakerHandle<K> {
    fn clone(&self) -> Self {
        Self { map: self.map.clone(), shared: self.shared.clone(), unkeyed: self.unkeyed.clone() }
    }
}

impl<K> fmt::Debug for KeyedCircuitBreakerHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerHandle")
            .field("name", &self.shared.events.name())
            .field("keys", &self.map.len())
            .field("capacity", &self.map.capacity())
            .field("unkeyed", &self.unkeyed.is_some())
            .finish()
    }
}

impl<K> KeyedCircuitBreakerHandle<K> {
    pub(crate) fn new(
        map: Arc<dyn KeyedAccess<K>>,
        shared: Arc<LayerShared>,
        unkeyed: Option<Arc<dyn CoreAccess>>,
    ) -> Self {
        Self { map, shared, unkeyed }
    }

    /// The breaker of the requests without a key, when the layer puts them under one
    /// ([`Unkeyed::Shared`](palisade_core::keyed::Unkeyed::Shared)).
    pub fn unkeyed(&self) -> Option<CircuitBreakerHandle> {
        self.unkeyed.clone().map(CircuitBreakerHandle::new)
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
    ///
    /// There is no `KeyedCircuitBreakerSnapshot` (CONTRIBUTING §3's keyed name): breaker
    /// states do not add up, so a keyed breaker's view is this list of per-key snapshots.
    pub fn snapshots(&self) -> Vec<(K, CircuitBreakerSnapshot)> {
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

    /// Keys forgotten so far to make room (each indistinguishable from a fresh key).
    pub fn evictions(&self) -> u64 {
        self.map.evictions()
    }

    /// New keys refused so far (with `KeySetFull`) because every held key still mattered.
    pub fn overflows(&self) -> u64 {
        self.map.overflows()
    }

    /// Forgets now every key whose breaker is indistinguishable from a fresh one (see
    /// [`KeyedCircuitBreakerLayer`](crate::KeyedCircuitBreakerLayer)); returns how many went.
    /// The layer does this by itself when it is full.
    pub fn sweep(&self) -> usize {
        self.map.sweep()
    }

    /// Forgets the breaker of `key` (the next call creates a fresh one); `true` if it was held.
    pub fn remove(&self, key: &K) -> bool {
        self.map.remove(key)
    }

    /// Forgets every breaker.
    pub fn clear(&self) {
        self.map.clear();
    }

    /// Calls `f` with every event of every key's breaker from now on. A listener that
    /// panics is caught and logged.
    pub fn on_event<OnEvent>(&self, f: OnEvent)
    where
        OnEvent: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.shared.listen(guarded(f));
    }
}
