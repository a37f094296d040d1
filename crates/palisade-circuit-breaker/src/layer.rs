//! [`CircuitBreakerLayer`] and [`KeyedCircuitBreakerLayer`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use palisade_core::classify::DefaultClassifier;
use tower_layer::Layer;

use crate::breaker::{Breaker, LayerShared, Striped};
use crate::builder::CircuitBreakerBuilder;
use crate::config::CircuitBreakerConfig;
use crate::handle::{CircuitBreakerHandle, KeyedCircuitBreakerHandle};
use crate::keyed::KeyedShared;
use crate::service::{CircuitBreaker, KeyedCircuitBreaker};

/// Wraps services in a circuit breaker; see the [crate docs](crate).
///
/// # Clone
///
/// The breaker is created with the layer. Every service this layer wraps, every clone of
/// those services and every clone of the layer share that one breaker: wrap five services
/// with one layer value and they trip together. Build another layer for another breaker.
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    striped: Arc<Striped<C>>,
}

impl<C> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self { striped: self.striped.clone() }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer").field("breaker", &self.striped.breaker.core).finish()
    }
}

impl CircuitBreakerLayer {
    /// A breaker with Resilience4j's defaults (see [`CircuitBreakerConfig`](crate::CircuitBreakerConfig)): opens when
    /// half of the last 100 calls failed, stays open 60 s, then lets 10 trials through.
    /// Infallible: the defaults are valid.
    ///
    /// ```
    /// use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
    ///
    /// let breaker = CircuitBreakerLayer::new();
    /// assert_eq!(breaker.handle().state(), CircuitState::Closed);
    /// ```
    pub fn new() -> Self {
        // The defaults are valid (a test keeps them so).
        let settings = CircuitBreakerConfig::default().settings();
        let shared = Arc::new(LayerShared::new(
            &settings.name,
            palisade_core::event::EventBus::new(crate::config::PATTERN, settings.name.clone()),
            false,
        ));
        Self::from_breaker(Arc::new(Breaker::new(Arc::new(settings), shared, None, DefaultClassifier)))
    }

    /// A builder, starting from the defaults of [`CircuitBreakerConfig`](crate::CircuitBreakerConfig).
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }
}

impl Default for CircuitBreakerLayer {
    /// As [`CircuitBreakerLayer::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    pub(crate) fn from_breaker(breaker: Arc<Breaker<C>>) -> Self {
        Self { striped: Arc::new(Striped::new(breaker)) }
    }

    pub(crate) fn striped(&self) -> &Arc<Striped<C>> {
        &self.striped
    }

    /// A handle on the breaker: state, metrics, manual states, events.
    pub fn handle(&self) -> CircuitBreakerHandle
    where
        C: Send + Sync + 'static,
    {
        CircuitBreakerHandle::new(self.striped.breaker.clone())
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self)
    }
}

/// Wraps services in one circuit breaker per key derived from each request (per host, per
/// tenant, per channel); built with [`CircuitBreakerBuilder::keyed`].
///
/// Breakers are created on a key's first call and share the layer's settings, classifier
/// and listeners; their transition events and their [`CircuitOpen`](crate::error::CircuitOpen)
/// rejections carry the key as text (its `Debug` form, a string without quotes), so a
/// client can tell which host is open, and
/// [`KeyedCircuitBreakerHandle`](crate::KeyedCircuitBreakerHandle) reads and steers each
/// key's breaker.
///
/// # Bounded keys
///
/// At most [`max_keys`](crate::KeyedCircuitBreakerBuilder::max_keys) are held, so keys taken from
/// requests cannot grow memory without bound. A key's breaker is forgotten (when room is
/// needed, or on [`sweep`](crate::KeyedCircuitBreakerHandle::sweep)) only when that is
/// indistinguishable from a fresh key:
///
/// - it is in the configured initial state (closed by default), and got there by itself:
///   a state set by hand through the handle is kept;
/// - nothing it recorded could change a decision: no failure counted in a row, the
///   exponential open wait at its first step, and an empty window — a time window empties
///   as its calls age out; a count window holds its last calls for ever, so **a key with a
///   count window is kept once it recorded a call** (use a time window for keys that come
///   and go; a keyed layer that sets no window gets a time window of 100 s). In
///   consecutive mode a key is kept while it has a failure counted, until a success (or
///   [`reset`](crate::CircuitBreakerHandle::reset)) clears it: keys whose last call failed
///   and that never call again stay (a client able to make calls fail for many keys can
///   fill the set that way; a time window forgets such keys once their calls age out, as
///   long as they never opened);
/// - a key whose breaker opened is kept until it closes again: open and half-open are not
///   the initial state, and forgetting one would let a fresh key's `minimum_calls` calls
///   through to a backend its breaker judged down. With automatic transitions an idle
///   opened key cycles open ↔ half-open (one timer at a time) until a trial closes it, so
///   a client able to make calls fail for many keys can fill the set with opened keys too
///   — the set then refuses new keys (below) rather than reset a judgement;
/// - no call is in flight through it and no handle to it is held.
///
/// When a new key arrives, the set is full and no key may be forgotten, the call is refused
/// with [`KeySetFull`](crate::error::KeySetFull) (an `Overloaded` rejection, 503) and nothing is reset. Metrics
/// counters of a forgotten breaker are gone with it.
///
/// # Requests without a key
///
/// A request whose key function gives `None` is refused with
/// [`KeyMissing`](crate::error::KeyMissing) (the default), let through with no breaker, or
/// put under one breaker shared by all such requests, as
/// [`when_unkeyed`](crate::KeyedCircuitBreakerBuilder::when_unkeyed) says; the first one logs
/// a warning, once per layer.
///
/// # Clone
///
/// Every service this layer wraps, their clones and the layer's clones share one set of
/// breakers.
pub struct KeyedCircuitBreakerLayer<C, K, F> {
    shared: Arc<KeyedShared<C, K, F>>,
}

impl<C, K, F> Clone for KeyedCircuitBreakerLayer<C, K, F> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<C, K, F> fmt::Debug for KeyedCircuitBreakerLayer<C, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("name", &self.shared.settings.name)
            .field("keys", &self.shared.map)
            .finish_non_exhaustive()
    }
}

impl<C, K, F> KeyedCircuitBreakerLayer<C, K, F> {
    pub(crate) fn from_shared(shared: KeyedShared<C, K, F>) -> Self {
        Self { shared: Arc::new(shared) }
    }

    pub(crate) fn shared(&self) -> &Arc<KeyedShared<C, K, F>> {
        &self.shared
    }

    /// A handle on the breakers: per-key state and metrics, manual states, events.
    pub fn handle(&self) -> KeyedCircuitBreakerHandle<K>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        KeyedCircuitBreakerHandle::new(
            self.shared.map.clone(),
            self.shared.layer.clone(),
            self.shared.unkeyed.clone().map(|b| b as Arc<dyn crate::breaker::CoreAccess>),
        )
    }
}

impl<S, C, K, F> Layer<S> for KeyedCircuitBreakerLayer<C, K, F> {
    type Service = KeyedCircuitBreaker<S, C, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker::new(inner, self)
    }
}
