//! [`ResourcePoolSnapshot`]: a resource pool's numbers at one moment.

/// A [`ResourcePool`](crate::ResourcePool)'s numbers at one moment, from
/// [`ResourcePool::snapshot`](crate::ResourcePool::snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourcePoolSnapshot {
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
    /// `create` calls that failed: an error, a panic, or no answer within
    /// [`create_timeout`](crate::ResourcePoolConfig::create_timeout) (from `acquire`,
    /// [`fill`](crate::ResourcePool::fill) or the background refill).
    pub create_failed: u64,
    /// Resources that went through [`Lifecycle::destroy`](crate::Lifecycle::destroy) since the pool was built.
    pub destroyed: u64,
    /// Resources taken out for good with [`Pooled::detach`](crate::Pooled::detach).
    pub detached: u64,
    /// Resources dropped without the `destroy` hook because no Tokio runtime was running
    /// to run it (a guard dropped outside any runtime after [`ResourcePool::close`](crate::ResourcePool::close)).
    pub dropped: u64,
    /// `acquire` calls that timed out ([`WhenFull::Wait`](palisade_core::when_full::WhenFull::Wait)'s bound passed).
    pub timed_out: u64,
    /// `acquire` calls refused at once because every place was taken
    /// ([`WhenFull::Refuse`](palisade_core::when_full::WhenFull::Refuse)).
    pub refused: u64,
}
