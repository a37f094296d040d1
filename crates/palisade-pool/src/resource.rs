//! A pool of resources that are not services: database connections, clients, buffers.
//!
//! A [`Pool`] creates resources through a [`Lifecycle`] (async `create`, `recycle` and
//! `destroy` hooks; [`lifecycle_fn`] builds one from closures), keeps between `min_size` and
//! `max_size` of them, and lends them out as [`Pooled`] guards that return the resource when
//! dropped. [`Pool::execute`] acquires, runs an async closure and releases in one call.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use palisade_pool::resource::{lifecycle_fn, Pool};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! static NEXT: AtomicUsize = AtomicUsize::new(0);
//! // A "connection" is just a number here; `recycle_if` rejects broken ones.
//! let pool = Pool::builder(
//!     lifecycle_fn(|| async { Ok::<_, std::io::Error>(NEXT.fetch_add(1, Ordering::Relaxed)) })
//!         .recycle_if(|conn: &mut usize| *conn != 13),
//! )
//! .name("db")
//! .max_size(4)
//! .acquire_timeout(Duration::from_secs(1))
//! .build()?;
//!
//! let doubled = pool.execute(async |conn: &mut usize| *conn * 2).await?;
//! assert_eq!(doubled, 0);
//! {
//!     let conn = pool.acquire().await?; // the same connection, recycled
//!     assert_eq!(*conn, 0);
//!     assert_eq!(pool.stats().in_use, 1);
//! } // returned here
//! assert_eq!(pool.stats().available, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Backpressure and waiting
//!
//! At most `max_size` resources exist. When all are lent out, [`Pool::acquire`] waits in
//! FIFO order for one to come back, up to the `acquire_timeout` (which covers the wait, the
//! recycle check and creation); then it fails with [`TimedOut`]. After [`Pool::close`] it
//! fails with [`Closed`].
//!
//! # Health
//!
//! Every idle resource is checked with [`Lifecycle::recycle`] before it is lent again; one
//! that fails is destroyed (with [`Lifecycle::destroy`]) and the next one (or a new one) is
//! tried. Resources idle longer than `idle_timeout` are destroyed when met, down to
//! `min_size`. [`Pooled::destroy`] throws away a resource the caller found broken.
//!
//! # Clone
//!
//! `Pool` is a handle: clones share the same resources, limits and stats.
//!
//! # Cancellation
//!
//! Dropping an `acquire` future releases its place in the queue; a resource being created or
//! recycled at that moment is dropped without the `destroy` hook (hooks are async and drop
//! is not).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use palisade_core::config::{ensure_nonzero_duration, ConfigError};
use palisade_core::event::{Event, EventBus, Listener};
use palisade_core::metric::{Counter, Gauge};
use palisade_core::rejection::{Closed, TimedOut};
use palisade_core::BoxError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::sizing::Sizing;

/// How a [`Pool`] makes, checks and throws away its resources.
///
/// Only `create` is required. `recycle` runs before an idle resource is lent again: return
/// an error to have it destroyed. `destroy` runs when the pool throws a resource away
/// (broken, idle too long, pool closed) from async code; a resource dropped by a guard or a
/// cancelled future is simply dropped.
pub trait Lifecycle: Send + Sync + 'static {
    /// The pooled resource.
    type Resource: Send + 'static;
    /// Why creating or recycling failed.
    type Error: Into<BoxError> + Send + 'static;

    /// Makes a new resource.
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Checks (and resets) an idle resource before it is lent again.
    fn recycle(&self, resource: &mut Self::Resource) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = resource;
        std::future::ready(Ok(()))
    }

    /// Tears a resource down.
    fn destroy(&self, resource: Self::Resource) -> impl Future<Output = ()> + Send {
        drop(resource);
        std::future::ready(())
    }
}

/// A [`Lifecycle`] from closures: an async `create`, an optional synchronous health check
/// and an optional async `destroy`. Built by [`lifecycle_fn`].
pub struct LifecycleFn<C, V = (), D = ()> {
    create: C,
    check: V,
    destroy: D,
}

impl<C, V, D> fmt::Debug for LifecycleFn<C, V, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleFn").finish_non_exhaustive()
    }
}

/// A [`Lifecycle`] whose `create` is the closure `create` (returning a future of
/// `Result<R, E>`); add a health check with [`LifecycleFn::recycle_if`] and a teardown with
/// [`LifecycleFn::on_destroy`].
pub fn lifecycle_fn<C, Fut, R, E>(create: C) -> LifecycleFn<C>
where
    C: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send,
{
    LifecycleFn { create, check: (), destroy: () }
}

impl<C, V, D> LifecycleFn<C, V, D> {
    /// Lends an idle resource again only if `check` returns `true`; otherwise it is
    /// destroyed.
    pub fn recycle_if<V2>(self, check: V2) -> LifecycleFn<C, V2, D> {
        LifecycleFn { create: self.create, check, destroy: self.destroy }
    }

    /// Runs `destroy` on every resource the pool throws away.
    pub fn on_destroy<D2>(self, destroy: D2) -> LifecycleFn<C, V, D2> {
        LifecycleFn { create: self.create, check: self.check, destroy }
    }
}

/// The synchronous check of a [`LifecycleFn`] (implemented for `()` and closures).
pub trait RecycleCheck<R>: Send + Sync + 'static {
    /// `true` when the resource may be lent again.
    fn check(&self, resource: &mut R) -> bool;
}

impl<R> RecycleCheck<R> for () {
    fn check(&self, _: &mut R) -> bool {
        true
    }
}

impl<R, F: Fn(&mut R) -> bool + Send + Sync + 'static> RecycleCheck<R> for F {
    fn check(&self, resource: &mut R) -> bool {
        self(resource)
    }
}

/// The teardown of a [`LifecycleFn`] (implemented for `()` and closures returning futures).
pub trait DestroyHook<R>: Send + Sync + 'static {
    /// Tears `resource` down.
    fn destroy(&self, resource: R) -> impl Future<Output = ()> + Send;
}

impl<R: Send + 'static> DestroyHook<R> for () {
    fn destroy(&self, resource: R) -> impl Future<Output = ()> + Send {
        drop(resource);
        std::future::ready(())
    }
}

impl<R, F, Fut> DestroyHook<R> for F
where
    F: Fn(R) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    fn destroy(&self, resource: R) -> impl Future<Output = ()> + Send {
        self(resource)
    }
}

/// The error [`lifecycle_fn`]'s health check reports for a resource it refused.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("resource failed its recycle check")]
pub struct RecycleRefused;

impl<C, Fut, R, E, V, D> Lifecycle for LifecycleFn<C, V, D>
where
    C: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send,
    R: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    V: RecycleCheck<R>,
    D: DestroyHook<R>,
{
    type Resource = R;
    type Error = BoxError;

    fn create(&self) -> impl Future<Output = Result<R, BoxError>> + Send {
        let fut = (self.create)();
        async move { fut.await.map_err(Into::into) }
    }

    fn recycle(&self, resource: &mut R) -> impl Future<Output = Result<(), BoxError>> + Send {
        let ok = self.check.check(resource);
        std::future::ready(if ok { Ok(()) } else { Err(RecycleRefused.into()) })
    }

    fn destroy(&self, resource: R) -> impl Future<Output = ()> + Send {
        self.destroy.destroy(resource)
    }
}

// === events ===

/// Why a resource was thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestroyReason {
    /// It failed its recycle check.
    Broken,
    /// It sat idle longer than `idle_timeout`.
    Idle,
    /// The pool was closed.
    Closed,
    /// The holder threw it away with [`Pooled::destroy`].
    Discarded,
}

/// What a [`Pool`] publishes to its listeners (and to `tracing`, target `palisade`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ResourceEvent {
    /// A resource was created; `total` now exist.
    Created {
        /// Resources that exist now.
        total: usize,
    },
    /// A resource was destroyed.
    Destroyed {
        /// Why.
        reason: DestroyReason,
        /// Resources that exist now.
        total: usize,
    },
    /// `create` failed; the caller of `acquire` gets the error.
    CreateFailed {
        /// The error's message.
        error: String,
    },
    /// An `acquire` waited as long as `acquire_timeout` allows.
    AcquireTimedOut {
        /// The timeout.
        after: Duration,
    },
}

impl Event for ResourceEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Destroyed { .. } => "destroyed",
            Self::CreateFailed { .. } => "create_failed",
            Self::AcquireTimedOut { .. } => "acquire_timed_out",
        }
    }

    fn level(&self) -> tracing::Level {
        match self {
            Self::CreateFailed { .. } => tracing::Level::WARN,
            Self::Destroyed { reason: DestroyReason::Broken, .. } => tracing::Level::INFO,
            _ => tracing::Level::DEBUG,
        }
    }
}

// === stats ===

/// A snapshot of a [`Pool`]'s numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceStats {
    /// `max_size`.
    pub max_size: usize,
    /// Resources that exist (idle, lent out, or being created or checked).
    pub total: usize,
    /// Idle resources ready to be lent.
    pub available: usize,
    /// Places taken by holders (lent out, or being created or checked for a caller).
    pub in_use: usize,
    /// Callers waiting for a place.
    pub waiting: usize,
    /// Resources created since the pool was built.
    pub created: u64,
    /// Resources destroyed (or dropped) since the pool was built.
    pub destroyed: u64,
    /// `acquire` calls that timed out.
    pub timed_out: u64,
}

// === builder ===

/// Builds a [`Pool`]; start with [`Pool::builder`].
pub struct PoolBuilder<L: Lifecycle> {
    lifecycle: L,
    name: Arc<str>,
    sizing: Sizing,
    acquire_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    listeners: Vec<Listener<ResourceEvent>>,
}

impl<L: Lifecycle> fmt::Debug for PoolBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("name", &self.name)
            .field("min_size", &self.sizing.min)
            .field("max_size", &self.sizing.max)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<L: Lifecycle> PoolBuilder<L> {
    /// The pool's name in rejections, events and metrics (default `"pool"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Resources kept even when idle (default 0); [`Pool::fill`] creates them.
    pub fn min_size(mut self, min: usize) -> Self {
        self.sizing.min = min;
        self
    }

    /// Most resources that may exist at once (default 10, at least 1).
    pub fn max_size(mut self, max: usize) -> Self {
        self.sizing.max = max;
        self
    }

    /// Longest an `acquire` may take, waiting and creating included (default: no limit).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// Destroys resources idle longer than this (down to `min_size`) when they are next met
    /// (default: never).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Calls `listener` with every [`ResourceEvent`].
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&ResourceEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Validates the settings and builds the pool.
    ///
    /// # Errors
    ///
    /// `max_size` is zero, `min_size > max_size`, or a timeout is zero.
    pub fn build(self) -> Result<Pool<L>, ConfigError> {
        let sizing = self.sizing.validate()?;
        if let Some(t) = self.acquire_timeout {
            ensure_nonzero_duration("acquire_timeout", t)?;
        }
        if let Some(t) = self.idle_timeout {
            ensure_nonzero_duration("idle_timeout", t)?;
        }
        let name = &*self.name;
        Ok(Pool {
            shared: Arc::new(Shared {
                lifecycle: self.lifecycle,
                sizing,
                acquire_timeout: self.acquire_timeout,
                idle_timeout: self.idle_timeout,
                permits: Arc::new(Semaphore::new(sizing.max)),
                idle: Mutex::new(VecDeque::with_capacity(sizing.max)),
                total: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                waiting: Gauge::new("palisade_pool_resource_waiting", name),
                total_gauge: Gauge::new("palisade_pool_resource_total", name),
                created: Counter::new("palisade_pool_resource_created_total", name),
                destroyed: Counter::new("palisade_pool_resource_destroyed_total", name),
                timed_out: Counter::new("palisade_pool_resource_timed_out_total", name),
                events: EventBus::with_listeners("pool", self.name.clone(), self.listeners),
                name: self.name,
            }),
        })
    }
}

// === pool ===

struct Idle<R> {
    resource: R,
    since: Option<Instant>,
}

struct Shared<L: Lifecycle> {
    lifecycle: L,
    name: Arc<str>,
    sizing: Sizing,
    acquire_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    /// One permit per place: a holder of a permit may hold one resource.
    permits: Arc<Semaphore>,
    idle: Mutex<VecDeque<Idle<L::Resource>>>,
    total: AtomicUsize,
    closed: AtomicBool,
    waiting: Gauge,
    total_gauge: Gauge,
    created: Counter,
    destroyed: Counter,
    timed_out: Counter,
    events: EventBus<ResourceEvent>,
}

impl<L: Lifecycle> Shared<L> {
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle<L::Resource>>> {
        match self.idle.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn add_total(&self) -> usize {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        self.total_gauge.set(total as i64);
        total
    }

    /// Gives back a place counted for a resource that was never created.
    fn unreserve(&self) {
        let total = self.total.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.total_gauge.set(total as i64);
    }

    fn forget(&self, reason: DestroyReason) {
        let total = self.total.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.total_gauge.set(total as i64);
        self.destroyed.increment();
        if self.events.is_observed() {
            self.events.publish(ResourceEvent::Destroyed { reason, total });
        }
    }

    async fn destroy(&self, resource: L::Resource, reason: DestroyReason) {
        self.lifecycle.destroy(resource).await;
        self.forget(reason);
    }

    fn closed(&self) -> BoxError {
        Closed::new(self.name.clone()).into()
    }
}

/// A pool of resources; see the [module docs](self).
///
/// # Clone
///
/// Clones share the same resources, limits, stats and listeners.
pub struct Pool<L: Lifecycle> {
    shared: Arc<Shared<L>>,
}

impl<L: Lifecycle> Clone for Pool<L> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<L: Lifecycle> fmt::Debug for Pool<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("name", &self.shared.name).field("stats", &self.stats()).finish()
    }
}

/// Keeps `total` right when a resource being created or checked is dropped mid-way.
struct Slot<'a, L: Lifecycle> {
    shared: &'a Shared<L>,
    armed: bool,
    /// The resource exists (being checked) rather than being created.
    exists: bool,
}

impl<L: Lifecycle> Drop for Slot<'_, L> {
    fn drop(&mut self) {
        if self.armed {
            if self.exists {
                self.shared.forget(DestroyReason::Discarded);
            } else {
                self.shared.unreserve();
            }
        }
    }
}

struct WaitingGuard<'a>(&'a Gauge);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

impl<L: Lifecycle> Pool<L> {
    /// A builder for a pool whose resources come from `lifecycle`.
    pub fn builder(lifecycle: L) -> PoolBuilder<L> {
        PoolBuilder {
            lifecycle,
            name: Arc::from("pool"),
            sizing: Sizing { min: 0, max: 10 },
            acquire_timeout: None,
            idle_timeout: None,
            listeners: Vec::new(),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The lifecycle hooks.
    pub fn lifecycle(&self) -> &L {
        &self.shared.lifecycle
    }

    /// Registers a listener for [`ResourceEvent`]s.
    pub fn on_event<F>(&self, listener: F)
    where
        F: Fn(&ResourceEvent) + Send + Sync + 'static,
    {
        self.shared.events.subscribe(listener);
    }

    /// Borrows a resource: an idle one that passes its recycle check, else a new one.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] after `acquire_timeout`, [`Closed`] once the pool is closed, or the
    /// error of `create`.
    pub async fn acquire(&self) -> Result<Pooled<L>, BoxError> {
        let Some(after) = self.shared.acquire_timeout else {
            return self.acquire_untimed().await;
        };
        if let Ok(res) = tokio::time::timeout(after, self.acquire_untimed()).await {
            return res;
        }
        self.shared.timed_out.increment();
        self.shared.events.publish(ResourceEvent::AcquireTimedOut { after });
        Err(TimedOut::new(self.shared.name.clone(), after).into())
    }

    async fn acquire_untimed(&self) -> Result<Pooled<L>, BoxError> {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(shared.closed());
        }
        let permit = match shared.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(shared.closed()),
            Err(TryAcquireError::NoPermits) => {
                shared.waiting.add(1);
                let _waiting = WaitingGuard(&shared.waiting);
                shared.permits.clone().acquire_owned().await.map_err(|_| shared.closed())?
            }
        };
        loop {
            let popped = shared.idle().pop_back();
            let Some(idle) = popped else { break };
            let mut slot = Slot { shared, armed: true, exists: true };
            let mut resource = idle.resource;
            if let (Some(limit), Some(since)) = (shared.idle_timeout, idle.since) {
                if since.elapsed() >= limit && shared.sizing.can_shrink(shared.total.load(Ordering::Acquire))
                {
                    slot.armed = false;
                    shared.destroy(resource, DestroyReason::Idle).await;
                    continue;
                }
            }
            if shared.lifecycle.recycle(&mut resource).await.is_ok() {
                slot.armed = false;
                return Ok(Pooled::new(resource, self.shared.clone(), permit));
            }
            slot.armed = false;
            shared.destroy(resource, DestroyReason::Broken).await;
        }
        shared.add_total();
        let mut slot = Slot { shared, armed: true, exists: false };
        match shared.lifecycle.create().await {
            Ok(resource) => {
                slot.armed = false;
                shared.created.increment();
                if shared.events.is_observed() {
                    let total = shared.total.load(Ordering::Acquire);
                    shared.events.publish(ResourceEvent::Created { total });
                }
                Ok(Pooled::new(resource, self.shared.clone(), permit))
            }
            Err(err) => {
                drop(slot);
                let err: BoxError = err.into();
                if shared.events.is_observed() {
                    shared.events.publish(ResourceEvent::CreateFailed { error: err.to_string() });
                }
                Err(err)
            }
        }
    }

    /// Borrows a resource, runs `f` on it and gives it back, returning `f`'s output.
    ///
    /// # Errors
    ///
    /// As [`Pool::acquire`].
    pub async fn execute<F, T>(&self, f: F) -> Result<T, BoxError>
    where
        F: AsyncFnOnce(&mut L::Resource) -> T,
    {
        let mut guard = self.acquire().await?;
        Ok(f(&mut guard).await)
    }

    /// Creates resources until `min_size` exist (or the pool is full of holders).
    ///
    /// # Errors
    ///
    /// The first error of `create`, or [`Closed`].
    pub async fn fill(&self) -> Result<(), BoxError> {
        let shared = &*self.shared;
        while shared.total.load(Ordering::Acquire) < shared.sizing.min {
            let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
                if shared.closed.load(Ordering::Acquire) {
                    return Err(shared.closed());
                }
                return Ok(());
            };
            shared.add_total();
            let mut slot = Slot { shared, armed: true, exists: false };
            // On error the slot gives the place back.
            let resource = shared.lifecycle.create().await.map_err(Into::into)?;
            slot.armed = false;
            shared.created.increment();
            drop(Pooled::new(resource, self.shared.clone(), permit));
        }
        Ok(())
    }

    /// Closes the pool: waiting and later `acquire` calls fail with [`Closed`], idle
    /// resources are destroyed now, lent ones are dropped when their guards are.
    pub async fn close(&self) {
        let shared = &*self.shared;
        shared.closed.store(true, Ordering::Release);
        shared.permits.close();
        let idle: Vec<_> = shared.idle().drain(..).collect();
        for i in idle {
            shared.destroy(i.resource, DestroyReason::Closed).await;
        }
    }

    /// Whether [`Pool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The pool's numbers now.
    pub fn stats(&self) -> ResourceStats {
        let shared = &*self.shared;
        let available = shared.idle().len();
        ResourceStats {
            max_size: shared.sizing.max,
            total: shared.total.load(Ordering::Acquire),
            available,
            in_use: shared.sizing.max.saturating_sub(shared.permits.available_permits()),
            waiting: usize::try_from(shared.waiting.get()).unwrap_or(0),
            created: shared.created.get(),
            destroyed: shared.destroyed.get(),
            timed_out: shared.timed_out.get(),
        }
    }
}

// === guard ===

/// A borrowed resource; it goes back to its [`Pool`] when dropped.
///
/// Dereferences to the resource.
pub struct Pooled<L: Lifecycle> {
    resource: Option<L::Resource>,
    shared: Arc<Shared<L>>,
    // Dropped after `Drop::drop` returned the resource, so a waiter woken by the permit
    // finds it idle.
    _permit: OwnedSemaphorePermit,
}

impl<L: Lifecycle> fmt::Debug for Pooled<L>
where
    L::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("pool", &self.shared.name)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl<L: Lifecycle> Pooled<L> {
    fn new(resource: L::Resource, shared: Arc<Shared<L>>, permit: OwnedSemaphorePermit) -> Self {
        Self { resource: Some(resource), shared, _permit: permit }
    }

    /// Throws the resource away (running the `destroy` hook) instead of returning it, e.g.
    /// after it failed mid-use.
    pub async fn destroy(mut this: Self) {
        if let Some(resource) = this.resource.take() {
            this.shared.destroy(resource, DestroyReason::Discarded).await;
        }
    }

    /// Takes the resource out of the pool for good; the pool may create another.
    pub fn detach(mut this: Self) -> Option<L::Resource> {
        let resource = this.resource.take();
        if resource.is_some() {
            this.shared.forget(DestroyReason::Discarded);
        }
        resource
    }
}

impl<L: Lifecycle> Deref for Pooled<L> {
    type Target = L::Resource;

    fn deref(&self) -> &L::Resource {
        // Only `destroy`/`detach` take the resource, and they consume the guard.
        match &self.resource {
            Some(r) => r,
            None => unreachable!("a Pooled guard always holds its resource until consumed"),
        }
    }
}

impl<L: Lifecycle> DerefMut for Pooled<L> {
    fn deref_mut(&mut self) -> &mut L::Resource {
        match &mut self.resource {
            Some(r) => r,
            None => unreachable!("a Pooled guard always holds its resource until consumed"),
        }
    }
}

impl<L: Lifecycle> Drop for Pooled<L> {
    fn drop(&mut self) {
        let Some(resource) = self.resource.take() else { return };
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            drop(resource);
            shared.forget(DestroyReason::Closed);
            return;
        }
        let since = shared.idle_timeout.map(|_| Instant::now());
        shared.idle().push_back(Idle { resource, since });
    }
}

// === serde ===

/// A [`Pool`]'s settings as data (feature `serde`); missing fields keep the defaults.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_pool::resource::{lifecycle_fn, PoolConfig};
///
/// let config: PoolConfig =
///     serde_json::from_str(r#"{ "name": "db", "max_size": 16, "acquire_timeout": "2s" }"#).unwrap();
/// let pool = config
///     .into_builder(lifecycle_fn(|| async { Ok::<_, std::io::Error>(()) }))
///     .build()
///     .unwrap();
/// assert_eq!(pool.stats().max_size, 16);
/// # }
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// See [`PoolBuilder::name`].
    #[serde(default)]
    pub name: Option<String>,
    /// See [`PoolBuilder::min_size`].
    #[serde(default)]
    pub min_size: Option<usize>,
    /// See [`PoolBuilder::max_size`].
    #[serde(default)]
    pub max_size: Option<usize>,
    /// See [`PoolBuilder::acquire_timeout`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub acquire_timeout: Option<Duration>,
    /// See [`PoolBuilder::idle_timeout`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub idle_timeout: Option<Duration>,
}

#[cfg(feature = "serde")]
impl PoolConfig {
    /// A builder with these settings for resources from `lifecycle` (validated by
    /// [`PoolBuilder::build`]).
    pub fn into_builder<L: Lifecycle>(self, lifecycle: L) -> PoolBuilder<L> {
        let mut b = Pool::builder(lifecycle);
        if let Some(v) = self.name {
            b = b.name(v);
        }
        if let Some(v) = self.min_size {
            b = b.min_size(v);
        }
        if let Some(v) = self.max_size {
            b = b.max_size(v);
        }
        if let Some(v) = self.acquire_timeout {
            b = b.acquire_timeout(v);
        }
        if let Some(v) = self.idle_timeout {
            b = b.idle_timeout(v);
        }
        b
    }
}
