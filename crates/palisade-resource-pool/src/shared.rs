//! The state every handle and guard of one resource pool shares, and the hooks run safely
//! (a panic in user code is contained).

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::FutureExt;
use palisade_core::event::{EventBus, Listener};
use palisade_core::metric::{Counter, Gauge};
use palisade_core::panic::{payload_message, Panicked};
use palisade_core::rejection::Closed;
use palisade_core::sync::lock;
use palisade_core::time::{deadline_after, deadline_from_now, FAR_FUTURE};
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::config::ResourcePoolConfig;
use crate::error::HookTimedOut;
use crate::event::{DestroyReason, ResourcePoolEvent};
use crate::lifecycle::Lifecycle;

/// Makes the closure `FnOnce` in inference (a closure handed to `AssertUnwindSafe` returning
/// a borrow of what it captured would be inferred `FnMut`).
pub(crate) fn once<F: FnOnce() -> T, T>(f: F) -> F {
    f
}

pub(crate) struct Idle<R> {
    pub(crate) resource: R,
    pub(crate) since: Option<Instant>,
}

pub(crate) struct Shared<Hooks: Lifecycle> {
    pub(crate) lifecycle: Hooks,
    pub(crate) name: Arc<str>,
    pub(crate) min_size: usize,
    pub(crate) max_size: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) create_timeout: Duration,
    pub(crate) recycle_timeout: Duration,
    pub(crate) destroy_timeout: Duration,
    /// One permit per place: a holder of a permit may hold one resource.
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) idle: Mutex<VecDeque<Idle<Hooks::Resource>>>,
    pub(crate) total: AtomicUsize,
    /// Set under the `idle` lock, so a resource coming back either lands in `idle` before
    /// `close` drains it or sees the pool closed.
    pub(crate) closed: AtomicBool,
    /// A background task is creating resources up to `min_size`.
    pub(crate) filling: AtomicBool,
    /// Live [`ResourcePool`](crate::ResourcePool) handles. When the last one goes (or the
    /// pool is closed) `stop` wakes the background refill, which then drops what it is
    /// doing (a `create` that may never answer included) and with it its reference to this
    /// state. [`Pooled`](crate::Pooled) guards do not count: they only give back.
    pub(crate) handles: AtomicUsize,
    pub(crate) stop: Notify,
    /// Resources taken out of the idle list to be destroyed for `idle_timeout` whose
    /// `destroy` has not finished: still in `total`, but no longer counted towards
    /// `min_size` when deciding what else may expire.
    pub(crate) expiring: AtomicUsize,
    /// The idle reaper (see [`Shared::ensure_reaper`]) runs.
    pub(crate) reaping: AtomicBool,
    /// The reaper waits for a release (the idle list was empty, or its oldest resource is
    /// kept for `min_size`). Read and written under the `idle` lock.
    pub(crate) reaper_parked: AtomicBool,
    pub(crate) idle_changed: Notify,
    pub(crate) waiting: Gauge,
    pub(crate) total_gauge: Gauge,
    pub(crate) created: Counter,
    pub(crate) create_failed: Counter,
    pub(crate) destroyed: Counter,
    pub(crate) detached: Counter,
    pub(crate) dropped: Counter,
    pub(crate) timed_out: Counter,
    pub(crate) refused: Counter,
    pub(crate) events: EventBus<ResourcePoolEvent>,
}

impl<Hooks: Lifecycle> Shared<Hooks> {
    pub(crate) fn new(
        lifecycle: Hooks,
        config: ResourcePoolConfig,
        listeners: Vec<Listener<ResourcePoolEvent>>,
    ) -> Self {
        let name: Arc<str> = config.name.into();
        let n = &*name;
        Self {
            lifecycle,
            min_size: config.min_size,
            max_size: config.max_size,
            when_full: config.when_full,
            idle_timeout: config.idle_timeout,
            create_timeout: config.create_timeout,
            recycle_timeout: config.recycle_timeout,
            destroy_timeout: config.destroy_timeout,
            permits: Arc::new(Semaphore::new(config.max_size)),
            // Grown as resources come back: `max_size` comes from the user.
            idle: Mutex::new(VecDeque::new()),
            total: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            filling: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
            stop: Notify::new(),
            expiring: AtomicUsize::new(0),
            reaping: AtomicBool::new(false),
            reaper_parked: AtomicBool::new(false),
            idle_changed: Notify::new(),
            waiting: Gauge::new("palisade_resource_pool_waiting", n),
            total_gauge: Gauge::new("palisade_resource_pool_resources", n),
            created: Counter::new("palisade_resource_pool_created_total", n),
            create_failed: Counter::new("palisade_resource_pool_create_failed_total", n),
            destroyed: Counter::new("palisade_resource_pool_destroyed_total", n),
            detached: Counter::new("palisade_resource_pool_detached_total", n),
            dropped: Counter::new("palisade_resource_pool_dropped_total", n),
            timed_out: Counter::new("palisade_resource_pool_timed_out_total", n),
            refused: Counter::new("palisade_resource_pool_refused_total", n),
            events: EventBus::with_listeners("pool", name.clone(), listeners),
            name,
        }
    }

    pub(crate) fn idle(&self) -> MutexGuard<'_, VecDeque<Idle<Hooks::Resource>>> {
        lock(&self.idle)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Publishes `event`, containing a panic of a listener (user code).
    pub(crate) fn publish(&self, event: ResourcePoolEvent) {
        if self.events.is_observed() && catch_unwind(AssertUnwindSafe(|| self.events.publish(event))).is_err()
        {
            tracing::warn!(target: "palisade", pool = %self.name, "a resource pool event listener panicked");
        }
    }

    pub(crate) fn add_total(&self) -> usize {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        self.total_gauge.set(total as i64);
        total
    }

    pub(crate) fn sub_total(&self) -> usize {
        let total = self.total.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.total_gauge.set(total as i64);
        total
    }

    pub(crate) fn panicked(&self, site: &'static str, payload: &(dyn std::any::Any + Send)) -> BoxError {
        Panicked::new("hook", self.name.clone(), payload_message(payload)).with_site(site).into()
    }

    /// Runs `hook` (a lifecycle hook's future) for at most `limit`: past it the hook's
    /// future is dropped and the answer is a [`HookTimedOut`]. A limit that saturates to
    /// "effectively never" sets no timer, nor does code running outside a Tokio runtime
    /// (there is no timer to set there).
    async fn bounded<T>(
        &self,
        site: &'static str,
        limit: Duration,
        hook: impl Future<Output = Result<T, BoxError>>,
    ) -> Result<T, BoxError> {
        let mut hook = pin!(hook);
        // Most hooks answer at their first poll (a default `recycle`, a synchronous check,
        // a default `destroy`): no timer for them, the common path stays as cheap as
        // without a bound.
        if let Poll::Ready(out) = poll_fn(|cx| Poll::Ready(hook.as_mut().poll(cx))).await {
            return out;
        }
        if limit >= FAR_FUTURE || tokio::runtime::Handle::try_current().is_err() {
            return hook.await;
        }
        match tokio::time::timeout_at(deadline_from_now(limit), hook).await {
            Ok(res) => res,
            Err(_) => Err(HookTimedOut::new(self.name.clone(), site, limit).into()),
        }
    }

    /// Runs `create` for at most `create_timeout`; a panic in it is an error, never an
    /// unwind through the pool.
    pub(crate) async fn create(&self) -> Result<Hooks::Resource, BoxError> {
        let fut = match catch_unwind(AssertUnwindSafe(|| self.lifecycle.create())) {
            Ok(fut) => fut,
            Err(payload) => return Err(self.panicked("create", &*payload)),
        };
        let caught = async {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(res) => res.map_err(Into::into),
                Err(payload) => Err(self.panicked("create", &*payload)),
            }
        };
        self.bounded("create", self.create_timeout, caught).await
    }

    /// Counts and reports a failed `create` (error, panic or timeout).
    pub(crate) fn count_create_failure(&self, err: &BoxError) {
        self.create_failed.increment();
        if self.events.is_observed() {
            self.publish(ResourcePoolEvent::CreateFailed { error: err.to_string() });
        }
    }

    /// Runs `recycle` for at most `recycle_timeout`; a panic in it, or no answer in time,
    /// fails the check.
    pub(crate) async fn recycle(&self, resource: &mut Hooks::Resource) -> Result<(), BoxError> {
        let fut = match catch_unwind(AssertUnwindSafe(once(move || self.lifecycle.recycle(resource)))) {
            Ok(fut) => fut,
            Err(payload) => return Err(self.panicked("recycle", &*payload)),
        };
        let caught = async {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(res) => res.map_err(Into::into),
                Err(payload) => Err(self.panicked("recycle", &*payload)),
            }
        };
        self.bounded("recycle", self.recycle_timeout, caught).await
    }

    /// Runs the `destroy` hook for at most `destroy_timeout` (containing a panic; past the
    /// bound the hook's future, and the resource with it, is dropped) and counts the
    /// resource gone, also if this future is dropped while the hook runs.
    pub(crate) async fn destroy(&self, resource: Hooks::Resource, reason: DestroyReason) {
        let _gone = Gone { shared: self, reason };
        let hook = async {
            match catch_unwind(AssertUnwindSafe(|| self.lifecycle.destroy(resource))) {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(payload) => Err(payload),
            }
            .map_err(|payload| self.panicked("destroy", &*payload))
        };
        if let Err(err) = self.bounded("destroy", self.destroy_timeout, hook).await {
            tracing::warn!(target: "palisade", pool = %self.name, error = %err, "a destroy hook failed");
        }
    }

    /// Destroys `resource` from synchronous code (a guard's or a cancelled future's drop):
    /// the hook runs on a task spawned on the current Tokio runtime. Outside any runtime
    /// the resource is dropped and counted in `dropped`.
    pub(crate) fn destroy_later(self: &Arc<Self>, resource: Hooks::Resource, reason: DestroyReason) {
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
            self.done_expiring(reason);
        }
    }

    /// Gives a resource back: idle again, or destroyed if the pool was closed meanwhile.
    /// Then destroys (on spawned tasks) the oldest idle resources past `idle_timeout`;
    /// outside a Tokio runtime (no task to run their `destroy` hook on) it leaves them to
    /// the next `acquire`.
    pub(crate) fn put_back(self: &Arc<Self>, resource: Hooks::Resource) {
        let now = self.idle_timeout.map(|_| Instant::now());
        let reap = now.is_some() && tokio::runtime::Handle::try_current().is_ok();
        let (expired, wake_reaper) = {
            let mut idle = self.idle();
            if self.is_closed() {
                drop(idle);
                self.destroy_later(resource, DestroyReason::Closed);
                return;
            }
            idle.push_back(Idle { resource, since: now });
            let expired = match now {
                Some(now) if reap => self.take_expired(&mut idle, now),
                _ => Vec::new(),
            };
            (expired, now.is_some() && self.reaper_parked.swap(false, Ordering::Relaxed))
        };
        if wake_reaper {
            self.idle_changed.notify_one();
        }
        for resource in expired {
            self.destroy_later(resource, DestroyReason::Idle);
        }
    }

    /// Whether one more resource may be destroyed for `idle_timeout`: more than `min_size`
    /// would remain.
    pub(crate) fn may_expire(&self) -> bool {
        let expiring = self.expiring.load(Ordering::Acquire);
        self.total.load(Ordering::Acquire).saturating_sub(expiring) > self.min_size
    }

    /// Counts `resource` as expiring (to be destroyed for `idle_timeout`); every resource
    /// destroyed with [`DestroyReason::Idle`] is counted here first.
    pub(crate) fn start_expiring(&self) {
        self.expiring.fetch_add(1, Ordering::AcqRel);
    }

    /// The destroy of a resource ended; one that expired is no longer expiring.
    pub(crate) fn done_expiring(&self, reason: DestroyReason) {
        if reason == DestroyReason::Idle {
            self.expiring.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Takes out of `idle` the oldest resources (the front: releases push to the back,
    /// `acquire` pops from the back) idle longer than `idle_timeout`, while more than
    /// `min_size` would remain; each is counted as expiring. O(1) per resource taken.
    pub(crate) fn take_expired(
        &self,
        idle: &mut VecDeque<Idle<Hooks::Resource>>,
        now: Instant,
    ) -> Vec<Hooks::Resource> {
        let mut expired = Vec::new();
        let Some(limit) = self.idle_timeout else { return expired };
        while let Some(Idle { since: Some(since), .. }) = idle.front() {
            if now.saturating_duration_since(*since) < limit || !self.may_expire() {
                break;
            }
            let Some(oldest) = idle.pop_front() else { break };
            self.start_expiring();
            expired.push(oldest.resource);
        }
        expired
    }

    /// Starts the idle reaper if `idle_timeout` is set (and not "effectively never"), none
    /// runs, a pool handle is left and a Tokio runtime is running (else at the next
    /// `acquire`). Cheap when it runs already.
    ///
    /// The reaper destroys (inline, one at a time) every idle resource as soon as it has
    /// been idle for `idle_timeout`, while more than `min_size` exist. It sleeps until the
    /// oldest idle resource expires; with none (or the oldest kept for `min_size`) it
    /// waits for the next release. It stops with the last pool handle or `close`.
    pub(crate) fn ensure_reaper(self: &Arc<Self>) {
        let Some(limit) = self.idle_timeout else { return };
        if limit >= FAR_FUTURE
            || self.reaping.load(Ordering::Acquire)
            || self.is_closed()
            || self.handles.load(Ordering::Acquire) == 0
            || self.reaping.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaping.store(false, Ordering::Release);
            return;
        };
        let shared = self.clone();
        runtime.spawn(async move {
            let _reaping = Reaping(&shared);
            let mut stopped = pin!(shared.stopped());
            loop {
                let now = Instant::now();
                let (expired, deadline) = {
                    let mut idle = shared.idle();
                    let expired = shared.take_expired(&mut idle, now);
                    let deadline = match idle.front() {
                        Some(Idle { since: Some(since), .. })
                            if now.saturating_duration_since(*since) < limit =>
                        {
                            Some(deadline_after(*since, limit))
                        }
                        _ => {
                            shared.reaper_parked.store(true, Ordering::Relaxed);
                            None
                        }
                    };
                    (expired, deadline)
                };
                let expired: Vec<_> = expired
                    .into_iter()
                    .map(|resource| Loose {
                        resource: Some(resource),
                        shared: &shared,
                        reason: DestroyReason::Idle,
                    })
                    .collect();
                let reaped = !expired.is_empty();
                for loose in expired {
                    if let Some(resource) = loose.take() {
                        shared.destroy(resource, DestroyReason::Idle).await;
                    }
                }
                // A resource may have gone meanwhile (destroyed by its borrower, detached):
                // its refill saw this one still counted, so look again now that it is gone.
                if reaped {
                    shared.replenish();
                }
                // The oldest idle resource only gets younger (releases push to the back),
                // so waking at its deadline is never late.
                let stop = if let Some(deadline) = deadline {
                    let sleep = pin!(tokio::time::sleep_until(deadline));
                    matches!(select(stopped.as_mut(), sleep).await, Either::Left(_))
                } else {
                    let released = pin!(shared.idle_changed.notified());
                    matches!(select(stopped.as_mut(), released).await, Either::Left(_))
                };
                if stop {
                    break;
                }
            }
        });
    }

    /// A new [`ResourcePool`](crate::ResourcePool) handle exists.
    pub(crate) fn handle_added(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// A [`ResourcePool`](crate::ResourcePool) handle was dropped. The last one closes the
    /// pool: nobody can borrow again, so the background refill and the reaper stop, the
    /// idle resources go through `destroy` (on spawned tasks) and lent ones when their
    /// guards give them back — every resource goes through the hook once, also when the
    /// pool is dropped without [`close`](crate::ResourcePool::close).
    pub(crate) fn handle_dropped(self: &Arc<Self>) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let idle: Vec<_> = {
            let mut idle = self.idle();
            self.closed.store(true, Ordering::Release);
            idle.drain(..).collect()
        };
        self.stop.notify_waiters();
        self.permits.close();
        for i in idle {
            self.destroy_later(i.resource, DestroyReason::Closed);
        }
    }

    /// Resolves once no pool handle is left or the pool is closed.
    async fn stopped(&self) {
        loop {
            let mut notified = pin!(self.stop.notified());
            notified.as_mut().enable();
            if self.handles.load(Ordering::Acquire) == 0 || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Starts the background refill when fewer than `min_size` resources exist (and none
    /// runs yet) and a pool handle is left. Cheap when there is nothing to do.
    ///
    /// The refill stops, dropping a `create` in progress, as soon as the last
    /// [`ResourcePool`](crate::ResourcePool) handle is dropped or the pool is closed, so a
    /// `create` that never answers does not keep the pool's state alive.
    pub(crate) fn replenish(self: &Arc<Self>) {
        if self.min_size == 0
            || self.total.load(Ordering::Acquire) >= self.min_size
            || self.is_closed()
            || self.handles.load(Ordering::Acquire) == 0
        {
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
            loop {
                let step = {
                    let stopped = pin!(shared.stopped());
                    let fill = pin!(shared.fill_one());
                    match select(stopped, fill).await {
                        // No one is left to use what it would create, or the pool closed.
                        Either::Left(((), _)) => break,
                        Either::Right((step, _)) => step,
                    }
                };
                match step {
                    // Let other tasks run between creations (a `create` that answers at
                    // once must not hog the thread).
                    Ok(true) => tokio::task::yield_now().await,
                    Ok(false) => {
                        reached = shared.total.load(Ordering::Acquire) >= shared.min_size;
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
            if reached {
                shared.replenish();
            }
        });
    }

    /// Creates one resource into the idle list if fewer than `min_size` exist and a place
    /// is free; `Ok(false)` when there is nothing to do.
    pub(crate) async fn fill_one(self: &Arc<Self>) -> Result<bool, BoxError> {
        if self.is_closed() || self.total.load(Ordering::Acquire) >= self.min_size {
            return Ok(false);
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return if self.is_closed() { Err(self.closed()) } else { Ok(false) };
        };
        if self.total.load(Ordering::Acquire) >= self.min_size {
            return Ok(false);
        }
        self.add_total();
        let mut slot = Slot { shared: self, armed: true };
        // On error the slot gives the place back.
        let resource = match self.create().await {
            Ok(resource) => resource,
            Err(err) => {
                self.count_create_failure(&err);
                return Err(err);
            }
        };
        slot.armed = false;
        self.created.increment();
        let total = self.total.load(Ordering::Acquire);
        self.publish(ResourcePoolEvent::Created { total });
        self.put_back(resource);
        drop(permit);
        Ok(true)
    }

    pub(crate) fn closed(&self) -> BoxError {
        Closed::new(self.name.clone()).into()
    }
}

// === guards ===

/// Keeps `total` right when a resource being created is dropped mid-way.
pub(crate) struct Slot<'a, Hooks: Lifecycle> {
    pub(crate) shared: &'a Shared<Hooks>,
    pub(crate) armed: bool,
}

impl<Hooks: Lifecycle> Drop for Slot<'_, Hooks> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.sub_total();
        }
    }
}

/// Marks the reaper gone when its task ends or is dropped (its runtime shut down), so a
/// later `acquire` can start another.
struct Reaping<'a, Hooks: Lifecycle>(&'a Shared<Hooks>);

impl<Hooks: Lifecycle> Drop for Reaping<'_, Hooks> {
    fn drop(&mut self) {
        let _idle = self.0.idle();
        self.0.reaper_parked.store(false, Ordering::Relaxed);
        self.0.reaping.store(false, Ordering::Release);
    }
}

/// Counts a resource destroyed once its `destroy` hook finished or was cut short.
pub(crate) struct Gone<'a, Hooks: Lifecycle> {
    pub(crate) shared: &'a Shared<Hooks>,
    pub(crate) reason: DestroyReason,
}

impl<Hooks: Lifecycle> Drop for Gone<'_, Hooks> {
    fn drop(&mut self) {
        let total = self.shared.sub_total();
        self.shared.done_expiring(self.reason);
        self.shared.destroyed.increment();
        self.shared.publish(ResourcePoolEvent::Destroyed { reason: self.reason, total });
    }
}

/// An existing resource between the idle list and a guard (being checked, or waiting for
/// its `destroy`): dropped mid-way (the `acquire` was cancelled) it is destroyed on a
/// spawned task, so every resource goes through the `destroy` hook exactly once.
pub(crate) struct Loose<'a, Hooks: Lifecycle> {
    pub(crate) resource: Option<Hooks::Resource>,
    pub(crate) shared: &'a Arc<Shared<Hooks>>,
    pub(crate) reason: DestroyReason,
}

impl<Hooks: Lifecycle> Loose<'_, Hooks> {
    pub(crate) fn take(mut self) -> Option<Hooks::Resource> {
        self.resource.take()
    }
}

impl<Hooks: Lifecycle> Drop for Loose<'_, Hooks> {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.shared.destroy_later(resource, self.reason);
        }
    }
}

pub(crate) struct WaitingGuard<'a>(pub(crate) &'a Gauge);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}
