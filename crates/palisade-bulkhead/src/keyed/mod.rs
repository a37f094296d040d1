//! A bulkhead per key, so one tenant cannot take every permit.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use palisade_core::__private::{Forget, KeyedMap, WarnOnce};
use palisade_core::keyed::Unkeyed;
use palisade_core::rejection::KeySetFull;
use tower_layer::Layer;

use crate::compartment::{Common, Compartment};

mod handle;
mod service;

pub use self::handle::{KeyedBulkheadHandle, KeyedBulkheadSnapshot};
pub use self::service::{KeyedBulkhead, KeyedResponseFuture};

pub(crate) struct KeyedShared<K, F> {
    pub(crate) common: Arc<Common>,
    pub(crate) map: KeyedMap<K, Compartment>,
    pub(crate) key: F,
    pub(crate) when_unkeyed: Unkeyed,
    /// The one compartment of every unkeyed request under [`Unkeyed::Shared`] (outside the
    /// map: it never counts against `max_keys` and is never forgotten).
    pub(crate) unkeyed: Arc<Compartment>,
    pub(crate) warn_unkeyed: WarnOnce,
    /// Permits per key now (changed through the handle); new keys get this many.
    pub(crate) max_concurrent: AtomicUsize,
    /// Serialises changes of `max_concurrent` (never held while a key is made).
    pub(crate) resizing: Mutex<()>,
}

impl<K: Hash + Eq + Clone, F> KeyedShared<K, F> {
    pub(crate) fn compartment(&self, key: &K) -> Result<Arc<Compartment>, KeySetFull> {
        self.map
            .get_or_insert_with(key, (), || {
                let compartment = Compartment::new(self.common.clone());
                let n = self.max_concurrent.load(Ordering::Acquire);
                if n != compartment.max_concurrent() {
                    // Checked when it was set.
                    let _ = compartment.set_max_concurrent(n);
                }
                compartment
            })
            .map_err(|full| KeySetFull::new(self.common.name.clone(), full.capacity()))
    }
}

/// A compartment may be forgotten when no permit is held and nobody waits: a fresh one
/// would then decide exactly the same. (The map also keeps any compartment a request still
/// holds, e.g. between `call` and joining the queue.)
impl Forget for Compartment {
    type Now = ();

    fn can_forget(&self, (): ()) -> bool {
        self.in_flight() == 0 && self.queued() == 0
    }
}

/// Applies a [`KeyedBulkhead`]: one pool of `max_concurrent` permits (and one wait queue)
/// per key, at most `max_keys` keys. Built by
/// [`BulkheadBuilder::keyed`](crate::BulkheadBuilder::keyed).
///
/// ```
/// use palisade_bulkhead::BulkheadLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio_test::block_on(async {
/// // Two calls at once per tenant, 10 000 tenants at most.
/// let layer = BulkheadLayer::builder()
///     .max_concurrent(2)
///     .keyed(|req: &(u32, String)| Some(req.0))
///     .max_keys(10_000)
///     .build()
///     .unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|(_tenant, q): (u32, String)| async move {
///         Ok::<_, std::convert::Infallible>(q.len())
///     }));
/// assert_eq!(svc.oneshot((7, "hello".to_owned())).await.unwrap(), 5);
/// # });
/// ```
///
/// The key is only known from the request, so unlike [`Bulkhead`](crate::Bulkhead) this
/// service takes its permit in the response future: `poll_ready` readies the inner service,
/// `call` moves that ready service into the future, which waits for the key's permit and
/// then calls it.
///
/// # Keys
///
/// At most `max_keys` keys are held, exactly. A key is forgotten only when none of its
/// permits is held and nobody waits for one — never while it still limits anyone, so two
/// calls beyond `max_concurrent` can never run for one key. Keys are forgotten only when a
/// new key arrives and all `max_keys` are held. When every held key has calls in flight or
/// waiting, a call for a *new* key fails at once with
/// [`KeySetFull`](palisade_core::rejection::KeySetFull) (HTTP 503); held keys are served as
/// usual. Looking for unused keys is a scan of the keys, so a full key set scans again only
/// after `len / 16` new keys or 100 ms: keys that went idle just after a scan that found
/// every key busy are reused from the next scan on (see [`palisade_core::keyed`]).
/// [`KeyedBulkheadHandle::sweep`] forgets the unused keys at once.
///
/// # Memory
///
/// Each key held costs its key plus about 430 bytes (its pool of permits and the map's
/// slot), whatever `max_concurrent` is: 100,000 keys take about 43 MB (measured with
/// 2,000,000 hostile keys in `tests/review_wave5.rs`). The key is stored as the key
/// function returns it, so derive a small one from what a client controls (a parsed id, an
/// IP address, a hash) rather than a whole header value, which a client can make tens of
/// kilobytes long.
///
/// # Requests without a key
///
/// A key function answering `None` (an axum server started without
/// `into_make_service_with_connect_info`, so `ConnectInfo` is missing) is handled as
/// [`when_unkeyed`](crate::KeyedBulkheadBuilder::when_unkeyed) says — refused with
/// [`KeyMissing`](palisade_core::rejection::KeyMissing) by default, let through unlimited,
/// or limited together in one shared compartment — and logs a warning the first time.
///
/// # Clone
///
/// Every service from one layer value, and every clone, shares the map of pools.
pub struct KeyedBulkheadLayer<K, F> {
    shared: Arc<KeyedShared<K, F>>,
}

impl<K, F> Clone for KeyedBulkheadLayer<K, F> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<K, F> fmt::Debug for KeyedBulkheadLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayer")
            .field("common", &self.shared.common)
            .field("keys", &self.shared.map)
            .field("when_unkeyed", &self.shared.when_unkeyed)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, F> KeyedBulkheadLayer<K, F> {
    /// A key is forgotten when it holds nothing, whatever its idle time (see the type docs).
    pub(crate) fn new(common: Arc<Common>, max_keys: usize, when_unkeyed: Unkeyed, key: F) -> Self {
        let max_concurrent = AtomicUsize::new(common.max_concurrent);
        let unkeyed = Arc::new(Compartment::new(common.clone()));
        Self {
            shared: Arc::new(KeyedShared {
                common,
                map: KeyedMap::new(max_keys),
                key,
                when_unkeyed,
                unkeyed,
                warn_unkeyed: WarnOnce::new(),
                max_concurrent,
                resizing: Mutex::new(()),
            }),
        }
    }

    /// The handle: per-key and summed snapshots, events, run-time limits.
    pub fn handle(&self) -> KeyedBulkheadHandle<K, F> {
        KeyedBulkheadHandle { shared: self.shared.clone() }
    }
}

impl<S, K, F> Layer<S> for KeyedBulkheadLayer<K, F> {
    type Service = KeyedBulkhead<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkhead::new(inner, self.shared.clone())
    }
}
