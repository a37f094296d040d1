//! [`ResourcePool`]: the handle callers borrow resources through.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use palisade_core::rejection::{Overloaded, TimedOut};
use palisade_core::time::{deadline_from_now, FAR_FUTURE};
use palisade_core::BoxError;
use tokio::sync::TryAcquireError;
use tokio::time::Instant;

use crate::builder::ResourcePoolBuilder;
use crate::event::{DestroyReason, ResourcePoolEvent};
use crate::lifecycle::Lifecycle;
use crate::pooled::Pooled;
use crate::shared::{Loose, Shared, Slot, WaitingGuard};
use crate::snapshot::ResourcePoolSnapshot;

/// A pool of resources; see the [crate docs](crate).
///
/// # Clone
///
/// Clones share the same resources, limits, snapshot numbers and listeners.
pub struct ResourcePool<Hooks: Lifecycle> {
    shared: Arc<Shared<Hooks>>,
}

impl<Hooks: Lifecycle> Clone for ResourcePool<Hooks> {
    fn clone(&self) -> Self {
        self.shared.handle_added();
        Self { shared: self.shared.clone() }
    }
}

impl<Hooks: Lifecycle> Drop for ResourcePool<Hooks> {
    fn drop(&mut self) {
        self.shared.handle_dropped();
    }
}

impl<Hooks: Lifecycle> fmt::Debug for ResourcePool<Hooks> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourcePool")
            .field("name", &self.shared.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl<Hooks: Lifecycle> ResourcePool<Hooks> {
    /// A builder for a pool whose resources come from `lifecycle`, with the defaults of
    /// [`ResourcePoolConfig`](crate::ResourcePoolConfig).
    pub fn builder(lifecycle: Hooks) -> ResourcePoolBuilder<Hooks> {
        ResourcePoolBuilder::new(lifecycle)
    }

    pub(crate) fn from_shared(shared: Arc<Shared<Hooks>>) -> Self {
        shared.handle_added();
        Self { shared }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The lifecycle hooks.
    pub fn lifecycle(&self) -> &Hooks {
        &self.shared.lifecycle
    }

    /// Registers a listener for [`ResourcePoolEvent`]s.
    pub fn on_event<OnEvent>(&self, listener: OnEvent)
    where
        OnEvent: Fn(&ResourcePoolEvent) + Send + Sync + 'static,
    {
        self.shared.events.subscribe(listener);
    }

    /// Borrows a resource: an idle one that passes its recycle check, else a new one.
    ///
    /// When every resource is lent out, [`when_full`](crate::ResourcePoolConfig::when_full)
    /// decides: wait (in FIFO order) up to its bound, or refuse at once.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when [`WhenFull::Wait`](palisade_core::when_full::WhenFull::Wait)'s bound passed (it covers the wait, the recycle
    /// check and a `create`), [`Overloaded`] under [`WhenFull::Refuse`](palisade_core::when_full::WhenFull::Refuse) when no place is
    /// free, [`Closed`](palisade_core::rejection::Closed) once the pool is closed, the error of `create`, [`Panicked`](crate::error::Panicked) if
    /// `create` panicked, or [`HookTimedOut`](crate::error::HookTimedOut) if `create` did
    /// not answer within [`create_timeout`](crate::ResourcePoolConfig::create_timeout).
    pub async fn acquire(&self) -> Result<Pooled<Hooks>, BoxError> {
        let shared = &self.shared;
        shared.ensure_reaper();
        let after = shared.when_full.max_wait();
        if after.is_zero() {
            return self.acquire_within(false).await;
        }
        if after >= FAR_FUTURE {
            // Saturates to "effectively never": no timer at all.
            return self.acquire_within(true).await;
        }
        if let Ok(res) = tokio::time::timeout_at(deadline_from_now(after), self.acquire_within(true)).await {
            return res;
        }
        shared.timed_out.increment();
        shared.publish(ResourcePoolEvent::AcquireTimedOut { after });
        Err(TimedOut::new(shared.name.clone(), after).into())
    }

    /// Takes a place (waiting for one when `wait`, else refusing), then an idle resource
    /// that passes its check or a new one.
    async fn acquire_within(&self, wait: bool) -> Result<Pooled<Hooks>, BoxError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(shared.closed());
        }
        let permit = match shared.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(shared.closed()),
            Err(TryAcquireError::NoPermits) if !wait => {
                shared.refused.increment();
                return Err(Overloaded::new(shared.name.clone()).into());
            }
            Err(TryAcquireError::NoPermits) => {
                shared.waiting.add(1);
                let _waiting = WaitingGuard(&shared.waiting);
                shared.permits.clone().acquire_owned().await.map_err(|_| shared.closed())?
            }
        };
        loop {
            let now = shared.idle_timeout.map(|_| Instant::now());
            let (expired, popped) = {
                let mut idle = shared.idle();
                let expired = match now {
                    Some(now) => shared.take_expired(&mut idle, now),
                    None => Vec::new(),
                };
                (expired, idle.pop_back())
            };
            // The oldest idle resources past `idle_timeout` go first (a cancelled
            // `acquire` leaves the rest to spawned tasks).
            let expired: Vec<_> = expired
                .into_iter()
                .map(|resource| Loose { resource: Some(resource), shared, reason: DestroyReason::Idle })
                .collect();
            for loose in expired {
                if let Some(resource) = loose.take() {
                    shared.destroy(resource, DestroyReason::Idle).await;
                }
            }
            let Some(idle) = popped else { break };
            let mut loose = Loose { resource: Some(idle.resource), shared, reason: DestroyReason::Discarded };
            if let (Some(limit), Some(since), Some(now)) = (shared.idle_timeout, idle.since, now) {
                if now.saturating_duration_since(since) >= limit && shared.may_expire() {
                    shared.start_expiring();
                    loose.reason = DestroyReason::Idle;
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
                shared.publish(ResourcePoolEvent::Created { total });
                shared.replenish();
                Ok(Pooled::new(resource, shared.clone(), permit))
            }
            Err(err) => {
                drop(slot);
                shared.count_create_failure(&err);
                Err(err)
            }
        }
    }

    /// Borrows a resource, runs `f` on it and gives it back, returning `f`'s output.
    ///
    /// # Errors
    ///
    /// As [`ResourcePool::acquire`].
    pub async fn execute<F, T>(&self, f: F) -> Result<T, BoxError>
    where
        F: AsyncFnOnce(&mut Hooks::Resource) -> T,
    {
        let mut guard = self.acquire().await?;
        Ok(f(&mut guard).await)
    }

    /// Creates resources until `min_size` exist (or the pool is full of holders), in the
    /// caller's task; the pool also does this by itself in the background.
    ///
    /// # Errors
    ///
    /// The first error of `create` ([`HookTimedOut`](crate::error::HookTimedOut) when it
    /// did not answer within [`create_timeout`](crate::ResourcePoolConfig::create_timeout)),
    /// or [`Closed`](palisade_core::rejection::Closed).
    pub async fn fill(&self) -> Result<(), BoxError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(shared.closed());
        }
        while shared.fill_one().await? {}
        Ok(())
    }

    /// Closes the pool: waiting and later `acquire` calls fail with [`Closed`](palisade_core::rejection::Closed), idle
    /// resources are destroyed now, lent ones when their guards give them back (on a task
    /// spawned on the current runtime: each goes through the `destroy` hook once).
    pub async fn close(&self) {
        let shared = &*self.shared;
        let idle: Vec<_> = {
            let mut idle = shared.idle();
            shared.closed.store(true, Ordering::Release);
            shared.stop.notify_waiters();
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

    /// Whether [`ResourcePool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The pool's numbers now.
    pub fn snapshot(&self) -> ResourcePoolSnapshot {
        let shared = &*self.shared;
        let available = shared.idle().len();
        ResourcePoolSnapshot {
            max_size: shared.max_size,
            total: shared.total.load(Ordering::Acquire),
            available,
            in_use: shared.max_size.saturating_sub(shared.permits.available_permits()),
            waiting: usize::try_from(shared.waiting.get()).unwrap_or(0),
            created: shared.created.get(),
            create_failed: shared.create_failed.get(),
            destroyed: shared.destroyed.get(),
            detached: shared.detached.get(),
            dropped: shared.dropped.get(),
            timed_out: shared.timed_out.get(),
            refused: shared.refused.get(),
        }
    }
}
