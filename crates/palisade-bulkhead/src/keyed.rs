//! A bulkhead per key, so one tenant cannot take every permit.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::keyed::{Forget, KeyedMap};
use palisade_core::rejection::KeySetFull;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::compartment::{Common, Compartment, Permit, Waiting};
use crate::event::BulkheadEvent;
use crate::handle::Snapshot;

struct KeyedShared<K, F> {
    common: Arc<Common>,
    map: KeyedMap<K, Compartment>,
    key: F,
    /// Permits per key now (changed through the handle); new keys get this many.
    max_concurrent: AtomicUsize,
    /// Serialises changes of `max_concurrent` (never held while a key is made).
    resizing: Mutex<()>,
}

impl<K: Hash + Eq + Clone, F> KeyedShared<K, F> {
    fn compartment(&self, key: &K) -> Result<Arc<Compartment>, KeySetFull> {
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
///     .shed_when_full()
///     .keyed(10_000, |req: &(u32, String)| req.0)
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
/// usual. [`KeyedBulkheadHandle::sweep`] forgets the unused keys at once.
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
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, F> KeyedBulkheadLayer<K, F> {
    /// A key is forgotten when it holds nothing, whatever its idle time (see the type docs).
    pub(crate) fn new(common: Arc<Common>, max_keys: usize, key: F) -> Self {
        let max_concurrent = AtomicUsize::new(common.max_concurrent);
        Self {
            shared: Arc::new(KeyedShared {
                common,
                map: KeyedMap::new(max_keys),
                key,
                max_concurrent,
                resizing: Mutex::new(()),
            }),
        }
    }

    /// The handle: per-key and summed snapshots, events.
    pub fn handle(&self) -> KeyedBulkheadHandle<K, F> {
        KeyedBulkheadHandle { shared: self.shared.clone() }
    }
}

impl<S, K, F> Layer<S> for KeyedBulkheadLayer<K, F> {
    type Service = KeyedBulkhead<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkhead { inner, shared: self.shared.clone() }
    }
}

/// The run-time bound on permits: what the semaphore can hold.
fn check_runtime_max(n: usize) -> Result<(), ConfigError> {
    ensure(
        n <= tokio::sync::Semaphore::MAX_PERMITS,
        "max_concurrent",
        format!("must not exceed {}", tokio::sync::Semaphore::MAX_PERMITS),
    )
}

/// A handle to a keyed bulkhead's pools.
pub struct KeyedBulkheadHandle<K, F> {
    shared: Arc<KeyedShared<K, F>>,
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
        let _serial = self.shared.resizing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // New keys get `n` from here on; a key made just before had its shard locked until
        // it was inserted, so the walk below sees it.
        self.shared.max_concurrent.store(n, Ordering::Release);
        let mut result = Ok(());
        self.shared.map.for_each(|_, c| {
            if let Err(e) = c.set_max_concurrent(n) {
                result = Err(e);
            }
        });
        result
    }

    /// How long a caller may wait for its key's permit (`None`: until one frees).
    pub fn max_wait(&self) -> Option<Duration> {
        self.shared.common.max_wait()
    }

    /// Changes how long callers may wait, for every key, for callers that start waiting
    /// from now on (those already waiting keep their deadline).
    pub fn set_max_wait(&self, max_wait: Option<Duration>) {
        self.shared.common.set_max_wait(max_wait);
    }

    /// How many callers may wait per key (`None`: unbounded).
    pub fn max_queue(&self) -> Option<usize> {
        Some(self.shared.common.max_queue()).filter(|&n| n != usize::MAX)
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

    /// Keys forgotten so far to make room (each held no permit and had nobody waiting).
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

    /// Registers a listener for every event (of every key) from now on.
    pub fn subscribe<G>(&self, f: G)
    where
        G: Fn(&BulkheadEvent) + Send + Sync + 'static,
    {
        self.shared.common.events.subscribe(f);
    }

    /// Counters over all keys; `in_flight` and `queued` summed over the keys held now.
    pub fn snapshot(&self) -> Snapshot {
        let m = &self.shared.common.metrics;
        let mut in_flight = 0;
        let mut queued = 0;
        self.shared.map.for_each(|_, c| {
            in_flight += c.in_flight();
            queued += c.queued();
        });
        Snapshot {
            max_concurrent: self.max_concurrent(),
            in_flight,
            queued,
            waited: m.waited.get(),
            rejected_queue_full: m.rejected_queue_full.get(),
            rejected_wait_timed_out: m.rejected_wait_timed_out.get(),
            rejected_no_permit: m.rejected_no_permit.get(),
            mean_wait: m.wait_time.mean(),
            max_wait: m.wait_time.max(),
        }
    }
}

/// A bulkhead per key; see [`KeyedBulkheadLayer`].
///
/// # Clone
///
/// Clones share the map of pools; a clone starts un-ready.
pub struct KeyedBulkhead<S, K, F> {
    inner: S,
    shared: Arc<KeyedShared<K, F>>,
}

impl<S, K, F> KeyedBulkhead<S, K, F> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F> Clone for KeyedBulkhead<S, K, F> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedBulkhead<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkhead")
            .field("inner", &self.inner)
            .field("common", &self.shared.common)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, Req> Service<Req> for KeyedBulkhead<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeyedResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.shared.key)(&req);
        let compartment = match self.shared.compartment(&key) {
            Ok(compartment) => compartment,
            Err(full) => {
                self.shared.common.metrics.rejected_no_permit.increment();
                return KeyedResponseFuture { state: KeyedState::Rejected { error: Some(full.into()) } };
            }
        };
        // The ready service goes into the future; a fresh clone stays behind, un-ready.
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        KeyedResponseFuture {
            state: KeyedState::Acquiring { compartment, waiting: None, svc: Some(svc), req: Some(req) },
        }
    }
}

pin_project! {
    /// The response future of a [`KeyedBulkhead`]: waits for the key's permit, then runs
    /// the call holding it. Dropping it at any point leaves the queue or frees the permit.
    pub struct KeyedResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: KeyedState<S, Req>,
    }
}

pin_project! {
    #[project = KeyedStateProj]
    enum KeyedState<S, Req>
    where
        S: Service<Req>,
    {
        Acquiring {
            compartment: Arc<Compartment>,
            waiting: Option<Box<Waiting>>,
            svc: Option<S>,
            req: Option<Req>,
        },
        Called {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
        },
        Rejected { error: Option<BoxError> },
    }
}

impl<S: Service<Req>, Req> fmt::Debug for KeyedResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            KeyedState::Acquiring { .. } => "acquiring",
            KeyedState::Called { .. } => "called",
            KeyedState::Rejected { .. } => "rejected",
        };
        f.debug_struct("KeyedResponseFuture").field("state", &state).finish()
    }
}

impl<S, Req> Future for KeyedResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                KeyedStateProj::Acquiring { compartment, waiting, svc, req } => {
                    let permit = match ready!(compartment.poll_acquire(waiting, cx)) {
                        Ok(permit) => permit,
                        Err(rejection) => return Poll::Ready(Err(rejection.into())),
                    };
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        return Poll::Pending;
                    };
                    let future = svc.call(req);
                    this.state.set(KeyedState::Called { future, permit: Some(permit) });
                }
                KeyedStateProj::Called { future, permit } => {
                    let out = ready!(future.poll(cx));
                    drop(permit.take());
                    return Poll::Ready(out.map_err(Into::into));
                }
                KeyedStateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "keyed bulkhead future polled after completion".into())));
                }
            }
        }
    }
}
