//! [`Pooled`]: a borrowed resource that goes back to its pool when dropped.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::event::DestroyReason;
use crate::lifecycle::Lifecycle;
use crate::shared::Shared;

/// A borrowed resource; it goes back to its [`ResourcePool`](crate::ResourcePool) when dropped (or, once the pool is
/// closed, through the `destroy` hook on a spawned task).
///
/// Dereferences to the resource.
pub struct Pooled<Hooks: Lifecycle> {
    resource: Option<Hooks::Resource>,
    shared: Arc<Shared<Hooks>>,
    /// Released in `Drop::drop` after the resource went back, so a waiter woken by the
    /// permit finds it idle, and before the refill looks for a free place.
    permit: Option<OwnedSemaphorePermit>,
}

impl<Hooks: Lifecycle> fmt::Debug for Pooled<Hooks>
where
    Hooks::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("pool", &self.shared.name)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl<Hooks: Lifecycle> Pooled<Hooks> {
    pub(crate) fn new(
        resource: Hooks::Resource,
        shared: Arc<Shared<Hooks>>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
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
    pub fn detach(mut this: Self) -> Option<Hooks::Resource> {
        let resource = this.resource.take();
        if resource.is_some() {
            this.shared.sub_total();
            this.shared.detached.increment();
        }
        // Dropping the guard frees its place and refills.
        resource
    }
}

impl<Hooks: Lifecycle> Deref for Pooled<Hooks> {
    type Target = Hooks::Resource;

    fn deref(&self) -> &Hooks::Resource {
        // Only `destroy`/`detach` take the resource, and they consume the guard.
        match &self.resource {
            Some(r) => r,
            None => unreachable!("a Pooled guard always holds its resource until consumed"),
        }
    }
}

impl<Hooks: Lifecycle> DerefMut for Pooled<Hooks> {
    fn deref_mut(&mut self) -> &mut Hooks::Resource {
        match &mut self.resource {
            Some(r) => r,
            None => unreachable!("a Pooled guard always holds its resource until consumed"),
        }
    }
}

impl<Hooks: Lifecycle> Drop for Pooled<Hooks> {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.shared.put_back(resource);
        }
        drop(self.permit.take());
        self.shared.replenish();
    }
}
