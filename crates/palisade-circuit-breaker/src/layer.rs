use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use palisade_core::classify::DefaultClassifier;
use palisade_core::keyed::KeyedMap;
use palisade_core::rejection::KeySetFull;
use tokio::time::Instant;
use tower_layer::Layer;

use crate::config::{CircuitBreakerLayerBuilder, Settings};
use crate::handle::{CircuitBreakerHandle, KeyedCircuitBreakerHandle};
use crate::service::{CircuitBreaker, KeyedCircuitBreaker};
use crate::state::{Breaker, LayerShared, Striped};

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
    /// A builder with Resilience4j-like defaults (see [`CircuitBreakerLayerBuilder`]).
    pub fn builder() -> CircuitBreakerLayerBuilder {
        CircuitBreakerLayerBuilder::new()
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

// === impl KeyedCircuitBreakerLayer ===

/// Takes the key of a request, for a keyed breaker (the host, the tenant, the channel).
///
/// Closures `Fn(&Req) -> K` are key extractors; implement it on a named type to be able to
/// write down the type of a keyed layer or service (to store it in a struct), see
/// [`build_keyed_with`](crate::CircuitBreakerLayerBuilder::build_keyed_with).
pub trait KeyExtractor<Req> {
    /// The key: one breaker per distinct key.
    type Key: Hash + Eq + Clone + fmt::Debug;

    /// The key of `req`.
    fn key(&self, req: &Req) -> Self::Key;
}

impl<Req, K, F> KeyExtractor<Req> for F
where
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + fmt::Debug,
{
    type Key = K;

    #[inline]
    fn key(&self, req: &Req) -> K {
        self(req)
    }
}

/// The text a key is shown as in rejections and events: its `Debug` form, without the
/// quotes of a string.
fn key_text<K: fmt::Debug>(key: &K) -> Arc<str> {
    let text = format!("{key:?}");
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('"') => Arc::from(inner),
        _ => Arc::from(text),
    }
}

pub(crate) struct KeyedShared<C, F, K> {
    settings: Arc<Settings>,
    layer: Arc<LayerShared>,
    map: Arc<KeyedMap<K, Breaker<Arc<C>>>>,
    classifier: Arc<C>,
    key_fn: F,
}

impl<C, F, K: Hash + Eq + Clone + fmt::Debug> KeyedShared<C, F, K> {
    /// The breaker of `key`, created on first use; `Err` when the key set is full of keys
    /// that may not be forgotten.
    pub(crate) fn breaker(&self, key: &K) -> Result<Arc<Breaker<Arc<C>>>, KeySetFull> {
        if let Some(breaker) = self.map.get(key) {
            return Ok(breaker);
        }
        self.map
            .get_or_insert_with(key, Instant::now(), || {
                Breaker::new(
                    self.settings.clone(),
                    self.layer.clone(),
                    Some(key_text(key)),
                    self.classifier.clone(),
                )
            })
            .map_err(|full| KeySetFull::new(self.settings.name.clone(), full.capacity()))
    }

    pub(crate) fn key_fn(&self) -> &F {
        &self.key_fn
    }
}

/// Wraps services in one circuit breaker per key derived from each request (per host, per
/// tenant, per channel); built with
/// [`CircuitBreakerLayerBuilder::build_keyed`].
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
/// At most [`max_keys`](CircuitBreakerLayerBuilder::max_keys) are held, so keys taken from
/// requests cannot grow memory without bound. A key's breaker is forgotten (when room is
/// needed, or on [`sweep`](crate::KeyedCircuitBreakerHandle::sweep)) only when that is
/// indistinguishable from a fresh key:
///
/// - it is in the configured initial state (closed by default), and got there by itself:
///   a state set by hand through the handle is kept;
/// - nothing it recorded could change a decision: no failure counted in a row, the
///   exponential open wait at its first step, and an empty window — a time window empties
///   as its calls age out; a count window holds its last calls for ever, so **a key with a
///   count window is kept once it recorded a call** (use a time window or consecutive
///   mode for keys that come and go);
/// - no call is in flight through it and no handle to it is held.
///
/// When a new key arrives, the set is full and no key may be forgotten, the call is refused
/// with [`KeySetFull`] (an `Overloaded` rejection, 503) and nothing is reset. Metrics
/// counters of a forgotten breaker are gone with it.
///
/// # Clone
///
/// Every service this layer wraps, their clones and the layer's clones share one set of
/// breakers.
pub struct KeyedCircuitBreakerLayer<C, F, K> {
    shared: Arc<KeyedShared<C, F, K>>,
}

impl<C, F, K> Clone for KeyedCircuitBreakerLayer<C, F, K> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<C, F, K> fmt::Debug for KeyedCircuitBreakerLayer<C, F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("name", &self.shared.settings.name)
            .field("keys", &self.shared.map)
            .finish_non_exhaustive()
    }
}

impl<C, F, K> KeyedCircuitBreakerLayer<C, F, K> {
    pub(crate) fn new(
        settings: Arc<Settings>,
        layer: Arc<LayerShared>,
        map: KeyedMap<K, Breaker<Arc<C>>>,
        classifier: Arc<C>,
        key_fn: F,
    ) -> Self {
        Self { shared: Arc::new(KeyedShared { settings, layer, map: Arc::new(map), classifier, key_fn }) }
    }

    pub(crate) fn shared(&self) -> &Arc<KeyedShared<C, F, K>> {
        &self.shared
    }

    /// A handle on the breakers: per-key state and metrics, manual states, events.
    pub fn handle(&self) -> KeyedCircuitBreakerHandle<K>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        KeyedCircuitBreakerHandle::new(self.shared.map.clone(), self.shared.layer.clone())
    }
}

impl<S, C, F, K> Layer<S> for KeyedCircuitBreakerLayer<C, F, K> {
    type Service = KeyedCircuitBreaker<S, C, F, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker::new(inner, self)
    }
}
