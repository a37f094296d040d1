//! The state every handle and guard of one resource pool shares, and the hooks run safely
//! (a panic in user code is contained).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::event::{EventBus, Listener};
use palisade_core::metric::{Counter, Gauge};
use palisade_core::panic::{payload_message, Panicked};
use palisade_core::rejection::Closed;
use palisade_core::sync::lock;
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::ResourcePoolConfig;
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
    /// One permit per place: a holder of a permit may hold one resource.
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) idle: Mutex<VecDeque<Idle<Hooks::Resource>>>,
    pub(crate) total: AtomicUsize,
    /// Set under the `idle` lock, so a resource coming back either lands in `idle` before
    /// `close` drains it or sees the pool closed.
    pub(crate) closed: AtomicBool,
    /// A background task is creating resources up to `min_size`.
    pub(crate) filling: AtomicBool,
    pub(crate) waiting: Gauge,
    pub(crate) total_gauge: Gauge,
    pub(crate) created: Counter,
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
            permits: Arc::new(Semaphore::new(config.max_size)),
            // Grown as resources come back: `max_size` comes from the user.
            idle: Mutex::new(VecDeque::new()),
            total: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            filling: AtomicBool::new(false),
            waiting: Gauge::new("palisade_resource_pool_waiting", n),
            total_gauge: Gauge::new("palisade_resource_pool_resources", n),
            created: Counter::new("palisade_resource_pool_created_total", n),
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

    /// Runs `create`; a panic in it is an error, never an unwind through the pool.
    pub(crate) async fn create(&self) -> Result<Hooks::Resource, BoxError> {
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
    pub(crate) async fn recycle(&self, resource: &mut Hooks::Resource) -> Result<(), BoxError> {
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
    pub(crate) async fn destroy(&self, resource: Hooks::Resource, reason: DestroyReason) {
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
        }
    }

    /// Gives a resource back: idle again, or destroyed if the pool was closed meanwhile.
    pub(crate) fn put_back(self: &Arc<Self>, resource: Hooks::Resource) {
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
    pub(crate) fn replenish(self: &Arc<Self>) {
        if self.min_size == 0 || self.total.load(Ordering::Acquire) >= self.min_size || self.is_closed() {
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
            if reached && Arc::strong_count(&shared) > 1 {
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
        let resource = self.create().await?;
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

/// Counts a resource destroyed once its `destroy` hook finished or was cut short.
pub(crate) struct Gone<'a, Hooks: Lifecycle> {
    pub(crate) shared: &'a Shared<Hooks>,
    pub(crate) reason: DestroyReason,
}

impl<Hooks: Lifecycle> Drop for Gone<'_, Hooks> {
    fn drop(&mut self) {
        let total = self.shared.sub_total();
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
