//! What keyed breakers share: the key function, the key map, and what a request without a
//! key meets.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use palisade_core::__private::{KeyedMap, WarnOnce};
use palisade_core::keyed::Unkeyed;
use palisade_core::rejection::{KeyMissing, KeySetFull};
use palisade_core::BoxError;
use tokio::time::Instant;

use crate::breaker::{Breaker, LayerShared};
use crate::settings::Settings;

/// Takes the key of a request, for a keyed breaker (the host, the tenant, the channel);
/// `None` when the request has none (see
/// [`when_unkeyed`](crate::KeyedCircuitBreakerBuilder::when_unkeyed)).
///
/// Closures `Fn(&Req) -> Option<K>` are key extractors; implement it on a named type to be
/// able to write down the type of a keyed layer or service (to store it in a struct):
///
/// ```
/// use palisade_circuit_breaker::{CircuitBreakerLayer, KeyExtractor, KeyedCircuitBreakerLayer};
/// use palisade_core::classify::DefaultClassifier;
///
/// struct Request { tenant: Option<u32> }
///
/// /// The breaker key of a request: its tenant.
/// struct ByTenant;
///
/// impl KeyExtractor<Request> for ByTenant {
///     type Key = u32;
///     fn key(&self, req: &Request) -> Option<u32> { req.tenant }
/// }
///
/// struct Client {
///     breakers: KeyedCircuitBreakerLayer<DefaultClassifier, u32, ByTenant>,
/// }
///
/// let client = Client { breakers: CircuitBreakerLayer::builder().keyed(ByTenant).build()? };
/// # let _ = client.breakers;
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
pub trait KeyExtractor<Req> {
    /// The key: one breaker per distinct key.
    type Key: Hash + Eq + Clone + fmt::Debug;

    /// The key of `req`, if it has one.
    fn key(&self, req: &Req) -> Option<Self::Key>;
}

impl<Req, K, F> KeyExtractor<Req> for F
where
    F: Fn(&Req) -> Option<K>,
    K: Hash + Eq + Clone + fmt::Debug,
{
    type Key = K;

    #[inline]
    fn key(&self, req: &Req) -> Option<K> {
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

/// Where a keyed layer sends a request.
pub(crate) enum Route<C> {
    /// Through this breaker.
    Breaker(Arc<Breaker<Arc<C>>>),
    /// Straight to the inner service (no key, [`Unkeyed::PassThrough`]).
    Pass,
    /// Refused: no key ([`KeyMissing`]) or no room for a new key ([`KeySetFull`]).
    Refuse(BoxError),
}

pub(crate) struct KeyedShared<C, K, F> {
    pub(crate) settings: Arc<Settings>,
    pub(crate) layer: Arc<LayerShared>,
    pub(crate) map: Arc<KeyedMap<K, Breaker<Arc<C>>>>,
    classifier: Arc<C>,
    key_fn: F,
    when_unkeyed: Unkeyed,
    /// The breaker of every request without a key, with [`Unkeyed::Shared`].
    pub(crate) unkeyed: Option<Arc<Breaker<Arc<C>>>>,
    warn: WarnOnce,
}

impl<C, K, F> KeyedShared<C, K, F> {
    pub(crate) fn new(
        settings: Arc<Settings>,
        layer: Arc<LayerShared>,
        map: KeyedMap<K, Breaker<Arc<C>>>,
        classifier: Arc<C>,
        key_fn: F,
        when_unkeyed: Unkeyed,
    ) -> Self {
        // The shared breaker has no key: its rejections and events name none.
        let unkeyed = (when_unkeyed == Unkeyed::Shared)
            .then(|| Arc::new(Breaker::new(settings.clone(), layer.clone(), None, classifier.clone())));
        Self {
            settings,
            layer,
            map: Arc::new(map),
            classifier,
            key_fn,
            when_unkeyed,
            unkeyed,
            warn: WarnOnce::new(),
        }
    }

    /// The route of `req`: its key's breaker (created on first use), or what
    /// `when_unkeyed` says for a request without a key.
    #[inline]
    pub(crate) fn route<Req>(&self, req: &Req) -> Route<C>
    where
        F: KeyExtractor<Req, Key = K>,
        K: Hash + Eq + Clone + fmt::Debug,
    {
        let Some(key) = self.key_fn.key(req) else {
            self.warn.warn_unkeyed(&self.settings.name);
            return match (self.when_unkeyed, &self.unkeyed) {
                (Unkeyed::PassThrough, _) => Route::Pass,
                (Unkeyed::Shared, Some(breaker)) => Route::Breaker(breaker.clone()),
                _ => Route::Refuse(KeyMissing::new(self.settings.name.clone()).into()),
            };
        };
        if let Some(breaker) = self.map.get(&key) {
            return Route::Breaker(breaker);
        }
        let made = self.map.get_or_insert_with(&key, Instant::now(), || {
            Breaker::new(
                self.settings.clone(),
                self.layer.clone(),
                Some(key_text(&key)),
                self.classifier.clone(),
            )
        });
        match made {
            Ok(breaker) => Route::Breaker(breaker),
            Err(full) => Route::Refuse(KeySetFull::new(self.settings.name.clone(), full.capacity()).into()),
        }
    }
}
