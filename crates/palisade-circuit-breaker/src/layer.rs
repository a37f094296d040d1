use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use palisade_core::classify::DefaultClassifier;
use palisade_core::keyed::{Forget, KeyedMap};
use tower_layer::Layer;

use crate::config::{CircuitBreakerLayerBuilder, Settings};
use crate::handle::{CircuitBreakerHandle, KeyedCircuitBreakerHandle};
use crate::service::{CircuitBreaker, KeyedCircuitBreaker};
use crate::state::{Breaker, LayerShared};

/// Wraps services in a circuit breaker; see the [crate docs](crate).
///
/// # Clone
///
/// The breaker is created with the layer. Every service this layer wraps, every clone of
/// those services and every clone of the layer share that one breaker: wrap five services
/// with one layer value and they trip together. Build another layer for another breaker.
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: Arc<Breaker<C>>,
}

impl<C> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self { breaker: self.breaker.clone() }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer").field("breaker", &self.breaker.core).finish()
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
        Self { breaker }
    }

    pub(crate) fn breaker(&self) -> &Arc<Breaker<C>> {
        &self.breaker
    }

    /// A handle on the breaker: state, metrics, manual states, events.
    pub fn handle(&self) -> CircuitBreakerHandle
    where
        C: Send + Sync + 'static,
    {
        CircuitBreakerHandle::new(self.breaker.clone())
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self)
    }
}

// === impl KeyedCircuitBreakerLayer ===

/// Placeholder predicate (the map also keeps any breaker a call still holds).
/// TODO(breaker): forgettable only when closed with nothing recorded that would change a
/// decision.
impl<C> Forget for Breaker<C> {
    type Now = ();

    fn can_forget(&self, (): ()) -> bool {
        true
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
    /// The breaker of `key`, created on first use.
    pub(crate) fn breaker(&self, key: &K) -> Arc<Breaker<Arc<C>>> {
        let make = || {
            let label = Arc::from(format!("{key:?}"));
            Breaker::new(self.settings.clone(), self.layer.clone(), Some(label), self.classifier.clone())
        };
        // TODO(breaker): a typed refusal when every key is in use; until then a breaker
        // that is not kept (the map is full of breakers in use).
        self.map.get_or_insert_with(key, (), make).unwrap_or_else(|_| Arc::new(make()))
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
/// and listeners; their transition events carry the key, `Debug`-formatted, and
/// [`KeyedCircuitBreakerHandle`](crate::KeyedCircuitBreakerHandle) reads and steers each
/// key's breaker. Rejections carry the layer's name. At most [`max_keys`](CircuitBreakerLayerBuilder::max_keys) are held: beyond
/// that, idle then least recently used keys are evicted (their breaker is forgotten), so
/// keys taken from requests cannot grow memory without bound.
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
