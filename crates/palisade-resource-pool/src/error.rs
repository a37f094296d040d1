//! Every error a [`ResourcePool`](crate::ResourcePool) returns besides palisade-core's
//! rejections ([`TimedOut`](palisade_core::rejection::TimedOut) when a wait runs out,
//! [`Overloaded`](palisade_core::rejection::Overloaded) when
//! [`WhenFull::Refuse`](palisade_core::when_full::WhenFull::Refuse) finds no free place,
//! [`Closed`](palisade_core::rejection::Closed) after `close`) and the errors of `create`.

/// A [`Lifecycle`](crate::Lifecycle) hook panicked (component `"hook"`, site `"create"`,
/// `"recycle"` or `"destroy"`): the `acquire` of a panicking `create` fails with it, a
/// resource whose `recycle` panicked is destroyed, a panicking `destroy` is logged.
pub use palisade_core::panic::Panicked;

/// The error [`lifecycle_fn`](crate::lifecycle_fn)'s health check reports for a resource it
/// refused (the resource is then destroyed).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("resource failed its recycle check")]
pub struct RecycleRefused;
