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
//! The pool keeps `min_size` resources by itself: a background task (spawned on the
//! current Tokio runtime) creates the missing ones, one at a time, after the pool is built
//! and whenever a resource is destroyed or detached.
//!
//! Every resource goes through [`Lifecycle::destroy`] exactly once: when the pool throws it
//! away, or, for one given back after [`Pool::close`] or held by a cancelled `acquire`, on a
//! task spawned on the current runtime (outside any runtime it can only be dropped, and is
//! counted in [`ResourceStats::dropped`]).
//!
//! A panic in a hook is caught: in `create` the `acquire` fails with
//! [`Panicked`], in `recycle` the resource is destroyed, in
//! `destroy` it is logged; the pool goes on.
//!
//! # Clone
//!
//! `Pool` is a handle: clones share the same resources, limits and stats.
//!
//! # Cancellation
//!
//! Dropping an `acquire` future releases its place in the queue; a `create` running at
//! that moment is dropped (no resource exists yet), a resource being recycled is destroyed
//! with the hook on a spawned task.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::event::{Event, EventBus, Listener};
use palisade_core::metric::{Counter, Gauge};
use palisade_core::rejection::{Closed, TimedOut};
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::error::Panicked;
use crate::sizing::Sizing;

/// How a [`Pool`] makes, checks and throws away its resources.
///
/// Only `create` is required. `recycle` runs before an idle resource is lent again: return
/// an error to have it destroyed. `destroy` runs once for every resource the pool throws
/// away (broken, idle too long, discarded, pool closed); see the [module docs](self).
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type CreateFn<R> = Box<dyn Fn() -> BoxFuture<Result<R, BoxError>> + Send + Sync>;
type CheckFn<R> = Box<dyn Fn(&mut R) -> bool + Send + Sync>;
type DestroyFn<R> = Box<dyn Fn(R) -> BoxFuture<()> + Send + Sync>;

/// A [`Lifecycle`] from closures: an async `create`, an optional synchronous health check
/// and an optional async `destroy`. Built by [`lifecycle_fn`].
///
/// The closures are erased when they are given (boxed into functions returning boxed
/// futures, one allocation per `create` and per `destroy`), so the type names only the
/// resource: a `Pool<LifecycleFn<Conn>>` can be stored in a struct, and futures awaiting the
/// pool can be spawned even when `create` returns [`BoxError`] (a closure type carrying
/// `E: Into<BoxError>` in the pool's type would hit rustc's "implementation of `From` is
/// not general enough", rust-lang/rust#64552, inside `tokio::spawn` or an axum handler).
///
/// ```
/// use palisade_core::BoxError;
/// use palisade_pool::resource::{lifecycle_fn, LifecycleFn, Pool};
///
/// struct AppState {
///     db: Pool<LifecycleFn<u32>>, // nameable
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = AppState {
///     db: Pool::builder(lifecycle_fn(|| async { Ok::<_, BoxError>(7u32) })).build().unwrap(),
/// };
/// let db = state.db.clone();
/// let n = tokio::spawn(async move { db.execute(async |c: &mut u32| *c).await.unwrap() });
/// assert_eq!(n.await.unwrap(), 7);
/// # }
/// ```
pub struct LifecycleFn<R> {
    create: CreateFn<R>,
    check: Option<CheckFn<R>>,
    destroy: Option<DestroyFn<R>>,
}

impl<R> fmt::Debug for LifecycleFn<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleFn")
            .field("recycle_if", &self.check.is_some())
            .field("on_destroy", &self.destroy.is_some())
            .finish_non_exhaustive()
    }
}

/// A [`Lifecycle`] whose `create` is the closure `create` (returning a future of
/// `Result<R, E>`); add a health check with [`LifecycleFn::recycle_if`] and a teardown with
/// [`LifecycleFn::on_destroy`].
pub fn lifecycle_fn<C, Fut, R, E>(create: C) -> LifecycleFn<R>
where
    C: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Send + 'static,
    E: Into<BoxError> + 'static,
{
    LifecycleFn {
        create: Box::new(move || {
            let fut = create();
            Box::pin(async move { fut.await.map_err(Into::into) })
        }),
        check: None,
        destroy: None,
    }
}

impl<R> LifecycleFn<R> {
    /// Lends an idle resource again only if `check` returns `true`; otherwise it is
    /// destroyed.
    pub fn recycle_if<F>(mut self, check: F) -> Self
    where
        F: Fn(&mut R) -> bool + Send + Sync + 'static,
    {
        self.check = Some(Box::new(check));
        self
    }

    /// Runs `destroy` on every resource the pool throws away.
    pub fn on_destroy<F, Fut>(mut self, destroy: F) -> Self
    where
        F: Fn(R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.destroy = Some(Box::new(move |resource| Box::pin(destroy(resource))));
        self
    }
}

/// The error [`lifecycle_fn`]'s health check reports for a resource it refused.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("resource failed its recycle check")]
pub struct RecycleRefused;

impl<R: Send + 'static> Lifecycle for LifecycleFn<R> {
    type Resource = R;
    type Error = BoxError;

    fn create(&self) -> impl Future<Output = Result<R, BoxError>> + Send {
        (self.create)()
    }

    fn recycle(&self, resource: &mut R) -> impl Future<Output = Result<(), BoxError>> + Send {
        let ok = self.check.as_ref().is_none_or(|check| check(resource));
        std::future::ready(if ok { Ok(()) } else { Err(RecycleRefused.into()) })
    }

    fn destroy(&self, resource: R) -> impl Future<Output = ()> + Send {
        let fut = self.destroy.as_ref().map(|destroy| destroy(resource));
        async move {
            if let Some(fut) = fut {
                fut.await;
            }
        }
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
    /// Resources that exist (idle, lent out, being created, checked or destroyed).
    pub total: usize,
    /// Idle resources ready to be lent.
    pub available: usize,
    /// Places taken by holders (lent out, or being created or checked for a caller).
    pub in_use: usize,
    /// Callers waiting for a place.
    pub waiting: usize,
    /// Resources created since the pool was built.
    pub created: u64,
    /// Resources that went through [`Lifecycle::destroy`] since the pool was built.
    pub destroyed: u64,
    /// Resources taken out for good with [`Pooled::detach`].
    pub detached: u64,
    /// Resources dropped without the `destroy` hook because no Tokio runtime was running
    /// to run it (a guard dropped outside any runtime after [`Pool::close`]).
    pub dropped: u64,
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

    /// Resources kept even when idle (default 0, at most 4,096). The pool keeps them by itself: it starts
    /// creating them when built inside a Tokio runtime (else at its first use), and creates
    /// replacements in the background, one at a time, whenever a resource is destroyed,
    /// detached or found missing after an `acquire` or a release. A failed `create` stops
    /// the refill until the next of those events; [`Pool::fill`] creates them and reports
    /// errors.
    pub fn min_size(mut self, min: usize) -> Self {
        self.sizing.min = min;
        self
    }

    /// Most resources that may exist at once (default 10, at least 1, at most tokio's
    /// [`Semaphore::MAX_PERMITS`]). Nothing is allocated up front for them.
    pub fn max_size(mut self, max: usize) -> Self {
        self.sizing.max = max;
        self
    }

    /// Longest an `acquire` may take, waiting and creating included (default: no limit; a
    /// huge value saturates to "effectively never", see [`palisade_core::time`]).
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

    /// Validates the settings and builds the pool; inside a Tokio runtime, starts creating
    /// `min_size` resources in the background.
    ///
    /// # Errors
    ///
    /// `max_size` is zero or above [`Semaphore::MAX_PERMITS`], `min_size` above 4,096 or
    /// above `max_size`, or a timeout is zero.
    pub fn build(self) -> Result<Pool<L>, ConfigError> {
        let sizing = self.sizing.validate()?;
        ensure(
            sizing.max <= Semaphore::MAX_PERMITS,
            "max_size",
            "must not exceed tokio's semaphore limit (usize::MAX >> 3)",
        )?;
        if let Some(t) = self.acquire_timeout {
            ensure_nonzero_duration("acquire_timeout", t)?;
        }
        if let Some(t) = self.idle_timeout {
            ensure_nonzero_duration("idle_timeout", t)?;
        }
        let name = &*self.name;
        let pool = Pool {
            shared: Arc::new(Shared {
                lifecycle: self.lifecycle,
                sizing,
                acquire_timeout: self.acquire_timeout,
                idle_timeout: self.idle_timeout,
                permits: Arc::new(Semaphore::new(sizing.max)),
                // Grown as resources come back: `max_size` comes from the user.
                idle: Mutex::new(VecDeque::new()),
                total: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                filling: AtomicBool::new(false),
                waiting: Gauge::new("palisade_pool_resource_waiting", name),
                total_gauge: Gauge::new("palisade_pool_resource_total", name),
                created: Counter::new("palisade_pool_resource_created_total", name),
                destroyed: Counter::new("palisade_pool_resource_destroyed_total", name),
                detached: Counter::new("palisade_pool_resource_detached_total", name),
                dropped: Counter::new("palisade_pool_resource_dropped_total", name),
                timed_out: Counter::new("palisade_pool_resource_timed_out_total", name),
                events: EventBus::with_listeners("pool", self.name.clone(), self.listeners),
                name: self.name,
            }),
        };
        pool.shared.replenish();
        Ok(pool)
    }
}

// === pool ===

/// Makes the closure `FnOnce` in inference (a closure handed to `AssertUnwindSafe` returning
/// a borrow of what it captured would be inferred `FnMut`).
fn once<F: FnOnce() -> T, T>(f: F) -> F {
    f
}

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
    /// Set under the `idle` lock, so a resource coming back either lands in `idle` before
    /// `close` drains it or sees the pool closed.
    closed: AtomicBool,
    /// A background task is creating resources up to `min_size`.
    filling: AtomicBool,
    waiting: Gauge,
    total_gauge: Gauge,
    created: Counter,
    destroyed: Counter,
    detached: Counter,
    dropped: Counter,
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

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Publishes `event`, containing a panic of a listener (user code).
    fn publish(&self, event: ResourceEvent) {
        if self.events.is_observed() && catch_unwind(AssertUnwindSafe(|| self.events.publish(event))).is_err()
        {
            tracing::warn!(target: "palisade", pool = %self.name, "a resource pool event listener panicked");
        }
    }

    fn add_total(&self) -> usize {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        self.total_gauge.set(total as i64);
        total
    }

    fn sub_total(&self) -> usize {
        let total = self.total.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.total_gauge.set(total as i64);
        total
    }

    fn panicked(&self, site: &'static str, payload: &(dyn Any + Send)) -> BoxError {
        Panicked::new(self.name.clone(), site, payload).into()
    }

    /// Runs `create`; a panic in it is an error, never an unwind through the pool.
    async fn create(&self) -> Result<L::Resource, BoxError> {
        let fut = match catch_unwind(AssertUnwindSafe(|| self.lifecycle.create())) {
            Ok(fut) => fut,
            Err(payload) => return Err(self.panicked("create", &*payload)),
        };
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(res) => res.map_err(Into::into),
            Err(payload) => Err(self.panicked("create", &*payload)),
        }
    }

    /// Runs `recycle`; a panic in it fails the check.
    async fn recycle(&self, resource: &mut L::Resource) -> Result<(), BoxError> {
        let fut = match catch_unwind(AssertUnwindSafe(once(move || self.lifecycle.recycle(resource)))) {
            Ok(fut) => fut,
            Err(payload) => return Err(self.panicked("recycle", &*payload)),
        };
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(res) => res.map_err(Into::into),
            Err(payload) => Err(self.panicked("recycle", &*payload)),
        }
    }

    /// Runs the `destroy` hook (containing a panic) and counts the resource gone, also if
    /// this future is dropped while the hook runs.
    async fn destroy(&self, resource: L::Resource, reason: DestroyReason) {
        let _gone = Gone { shared: self, reason };
        let ran = match catch_unwind(AssertUnwindSafe(|| self.lifecycle.destroy(resource))) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(payload) => Err(payload),
        };
        if let Err(payload) = ran {
            let err = self.panicked("destroy", &*payload);
            tracing::warn!(target: "palisade", pool = %self.name, error = %err, "a destroy hook panicked");
        }
    }

    /// Destroys `resource` from synchronous code (a guard's or a cancelled future's drop):
    /// the hook runs on a task spawned on the current Tokio runtime. Outside any runtime
    /// the resource is dropped and counted in `dropped`.
    fn destroy_later(self: &Arc<Self>, resource: L::Resource, reason: DestroyReason) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.clone();
            runtime.spawn(async move {
                shared.destroy(resource, reason).await;
                shared.replenish();
            });
        } else {
            drop(resource);
            self.sub_total();
            self.dropped.increment();
        }
    }

    /// Gives a resource back: idle again, or destroyed if the pool was closed meanwhile.
    fn put_back(self: &Arc<Self>, resource: L::Resource) {
        let since = self.idle_timeout.map(|_| Instant::now());
        let mut idle = self.idle();
        if self.is_closed() {
            drop(idle);
            self.destroy_later(resource, DestroyReason::Closed);
            return;
        }
        idle.push_back(Idle { resource, since });
    }

    /// Starts the background refill when fewer than `min_size` resources exist (and none
    /// runs yet). Cheap when there is nothing to do.
    fn replenish(self: &Arc<Self>) {
        if self.sizing.min == 0 || self.total.load(Ordering::Acquire) >= self.sizing.min || self.is_closed() {
            return;
        }
        if self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.filling.store(false, Ordering::Release);
            return;
        };
        let shared = self.clone();
        runtime.spawn(async move {
            let mut reached = false;
            // Stop when every pool handle and guard is gone: no one would use them.
            while Arc::strong_count(&shared) > 1 {
                match shared.fill_one().await {
                    // Let other tasks run between creations (a `create` that answers at
                    // once must not hog the thread).
                    Ok(true) => tokio::task::yield_now().await,
                    Ok(false) => {
                        reached = shared.total.load(Ordering::Acquire) >= shared.sizing.min;
                        break;
                    }
                    // A failed `create` waits for the next acquire, release or destroy
                    // instead of spinning.
                    Err(err) => {
                        tracing::debug!(target: "palisade", pool = %shared.name, error = %err, "refilling to min_size failed");
                        break;
                    }
                }
            }
            shared.filling.store(false, Ordering::Release);
            // A resource that went while this task was finishing found `filling` set and
            // started nothing: look again.
            if reached && Arc::strong_count(&shared) > 1 {
                shared.replenish();
            }
        });
    }

    /// Creates one resource into the idle list if fewer than `min_size` exist and a place
    /// is free; `Ok(false)` when there is nothing to do.
    async fn fill_one(self: &Arc<Self>) -> Result<bool, BoxError> {
        if self.is_closed() || self.total.load(Ordering::Acquire) >= self.sizing.min {
            return Ok(false);
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return if self.is_closed() { Err(self.closed()) } else { Ok(false) };
        };
        if self.total.load(Ordering::Acquire) >= self.sizing.min {
            return Ok(false);
        }
        self.add_total();
        let mut slot = Slot { shared: self, armed: true };
        // On error the slot gives the place back.
        let resource = self.create().await?;
        slot.armed = false;
        self.created.increment();
        let total = self.total.load(Ordering::Acquire);
        self.publish(ResourceEvent::Created { total });
        self.put_back(resource);
        drop(permit);
        Ok(true)
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

/// Keeps `total` right when a resource being created is dropped mid-way.
struct Slot<'a, L: Lifecycle> {
    shared: &'a Shared<L>,
    armed: bool,
}

impl<L: Lifecycle> Drop for Slot<'_, L> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.sub_total();
        }
    }
}

/// Counts a resource destroyed once its `destroy` hook finished or was cut short.
struct Gone<'a, L: Lifecycle> {
    shared: &'a Shared<L>,
    reason: DestroyReason,
}

impl<L: Lifecycle> Drop for Gone<'_, L> {
    fn drop(&mut self) {
        let total = self.shared.sub_total();
        self.shared.destroyed.increment();
        self.shared.publish(ResourceEvent::Destroyed { reason: self.reason, total });
    }
}

/// An existing resource between the idle list and a guard (being checked, or waiting for
/// its `destroy`): dropped mid-way (the `acquire` was cancelled) it is destroyed on a
/// spawned task, so every resource goes through the `destroy` hook exactly once.
struct Loose<'a, L: Lifecycle> {
    resource: Option<L::Resource>,
    shared: &'a Arc<Shared<L>>,
    reason: DestroyReason,
}

impl<L: Lifecycle> Loose<'_, L> {
    fn take(mut self) -> Option<L::Resource> {
        self.resource.take()
    }
}

impl<L: Lifecycle> Drop for Loose<'_, L> {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.shared.destroy_later(resource, self.reason);
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
    /// [`TimedOut`] after `acquire_timeout`, [`Closed`] once the pool is closed, the error
    /// of `create`, or [`Panicked`] if `create` panicked.
    pub async fn acquire(&self) -> Result<Pooled<L>, BoxError> {
        let Some(after) = self.shared.acquire_timeout else {
            return self.acquire_untimed().await;
        };
        let deadline = deadline_from_now(after);
        if let Ok(res) = tokio::time::timeout_at(deadline, self.acquire_untimed()).await {
            return res;
        }
        self.shared.timed_out.increment();
        self.shared.publish(ResourceEvent::AcquireTimedOut { after });
        Err(TimedOut::new(self.shared.name.clone(), after).into())
    }

    async fn acquire_untimed(&self) -> Result<Pooled<L>, BoxError> {
        let shared = &self.shared;
        if shared.is_closed() {
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
            let mut loose = Loose { resource: Some(idle.resource), shared, reason: DestroyReason::Discarded };
            if let (Some(limit), Some(since)) = (shared.idle_timeout, idle.since) {
                if since.elapsed() >= limit && shared.sizing.can_shrink(shared.total.load(Ordering::Acquire))
                {
                    if let Some(resource) = loose.take() {
                        shared.destroy(resource, DestroyReason::Idle).await;
                    }
                    continue;
                }
            }
            let checked = match loose.resource.as_mut() {
                Some(resource) => shared.recycle(resource).await,
                None => continue,
            };
            let Some(resource) = loose.take() else { continue };
            if checked.is_ok() {
                shared.replenish();
                return Ok(Pooled::new(resource, shared.clone(), permit));
            }
            shared.destroy(resource, DestroyReason::Broken).await;
        }
        shared.add_total();
        let mut slot = Slot { shared: &**shared, armed: true };
        match shared.create().await {
            Ok(resource) => {
                slot.armed = false;
                shared.created.increment();
                let total = shared.total.load(Ordering::Acquire);
                shared.publish(ResourceEvent::Created { total });
                shared.replenish();
                Ok(Pooled::new(resource, shared.clone(), permit))
            }
            Err(err) => {
                drop(slot);
                if shared.events.is_observed() {
                    shared.publish(ResourceEvent::CreateFailed { error: err.to_string() });
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

    /// Creates resources until `min_size` exist (or the pool is full of holders), in the
    /// caller's task; the pool also does this by itself in the background.
    ///
    /// # Errors
    ///
    /// The first error of `create`, or [`Closed`].
    pub async fn fill(&self) -> Result<(), BoxError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(shared.closed());
        }
        while shared.fill_one().await? {}
        Ok(())
    }

    /// Closes the pool: waiting and later `acquire` calls fail with [`Closed`], idle
    /// resources are destroyed now, lent ones when their guards give them back (on a task
    /// spawned on the current runtime: each goes through the `destroy` hook once).
    pub async fn close(&self) {
        let shared = &*self.shared;
        let idle: Vec<_> = {
            let mut idle = shared.idle();
            shared.closed.store(true, Ordering::Release);
            idle.drain(..)
                .map(|i| Loose {
                    resource: Some(i.resource),
                    shared: &self.shared,
                    reason: DestroyReason::Closed,
                })
                .collect()
        };
        shared.permits.close();
        // If this future is dropped midway, the resources left go through the hook on
        // spawned tasks (`Loose`).
        for loose in idle {
            if let Some(resource) = loose.take() {
                shared.destroy(resource, DestroyReason::Closed).await;
            }
        }
    }

    /// Whether [`Pool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
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
            detached: shared.detached.get(),
            dropped: shared.dropped.get(),
            timed_out: shared.timed_out.get(),
        }
    }
}

// === guard ===

/// A borrowed resource; it goes back to its [`Pool`] when dropped (or, once the pool is
/// closed, through the `destroy` hook on a spawned task).
///
/// Dereferences to the resource.
pub struct Pooled<L: Lifecycle> {
    resource: Option<L::Resource>,
    shared: Arc<Shared<L>>,
    /// Released in `Drop::drop` after the resource went back, so a waiter woken by the
    /// permit finds it idle, and before the refill looks for a free place.
    permit: Option<OwnedSemaphorePermit>,
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
        Self { resource: Some(resource), shared, permit: Some(permit) }
    }

    /// Throws the resource away (running the `destroy` hook) instead of returning it, e.g.
    /// after it failed mid-use; the pool refills to `min_size`.
    pub async fn destroy(mut this: Self) {
        if let Some(resource) = this.resource.take() {
            this.shared.destroy(resource, DestroyReason::Discarded).await;
        }
        // Dropping the guard frees its place and refills.
    }

    /// Takes the resource out of the pool for good (no `destroy` hook: it is yours now);
    /// the pool may create another.
    pub fn detach(mut this: Self) -> Option<L::Resource> {
        let resource = this.resource.take();
        if resource.is_some() {
            this.shared.sub_total();
            this.shared.detached.increment();
        }
        // Dropping the guard frees its place and refills.
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
        if let Some(resource) = self.resource.take() {
            self.shared.put_back(resource);
        }
        drop(self.permit.take());
        self.shared.replenish();
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
