//! A pool of resources that are not services — database connections, clients, buffers —
//! checked out and back, as [deadpool](https://docs.rs/deadpool)'s managed pool.
//!
//! A [`ResourcePool`] creates resources through a [`Lifecycle`] (async `create`, `recycle` and
//! `destroy` hooks; [`lifecycle_fn`] builds one from closures), keeps between `min_size` and
//! `max_size` of them, and lends them out as [`Pooled`] guards that return the resource when
//! dropped. [`ResourcePool::execute`] acquires, runs an async closure and releases in one call.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use palisade_core::when_full::WhenFull;
//! use palisade_resource_pool::{lifecycle_fn, ResourcePool};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! static NEXT: AtomicUsize = AtomicUsize::new(0);
//! // A "connection" is just a number here; `recycle_if` rejects broken ones.
//! let pool = ResourcePool::builder(
//!     lifecycle_fn(|| async { Ok::<_, std::io::Error>(NEXT.fetch_add(1, Ordering::Relaxed)) })
//!         .recycle_if(|conn: &mut usize| *conn != 13),
//! )
//! .name("db")
//! .max_size(4)
//! .when_full(WhenFull::wait(Duration::from_secs(1)))
//! .build()?;
//!
//! let doubled = pool.execute(async |conn: &mut usize| *conn * 2).await?;
//! assert_eq!(doubled, 0);
//! {
//!     let conn = pool.acquire().await?; // the same connection, recycled
//!     assert_eq!(*conn, 0);
//!     assert_eq!(pool.snapshot().in_use, 1);
//! } // returned here
//! assert_eq!(pool.snapshot().available, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Backpressure and waiting
//!
//! At most `max_size` resources exist. When all are lent out,
//! [`when_full`](ResourcePoolConfig::when_full) decides what [`ResourcePool::acquire`] does:
//! by default it waits in FIFO order for one to come back, without bound;
//! [`WhenFull::wait(d)`](palisade_core::when_full::WhenFull::wait) bounds the whole `acquire` (the wait,
//! the recycle check and a `create`) by `d`, then fails with
//! [`TimedOut`](palisade_core::rejection::TimedOut);
//! [`WhenFull::Refuse`](palisade_core::when_full::WhenFull::Refuse) fails at once with
//! [`Overloaded`](palisade_core::rejection::Overloaded). After [`ResourcePool::close`] it
//! fails with [`Closed`](palisade_core::rejection::Closed).
//!
//! # Health
//!
//! Every idle resource is checked with [`Lifecycle::recycle`] before it is lent again; one
//! that fails is destroyed (with [`Lifecycle::destroy`]) and the next one (or a new one) is
//! tried. A resource idle for `idle_timeout` is destroyed then, down to `min_size`, by
//! the pool's reaper task (and by any `acquire` or release that meets it first; see
//! [`idle_timeout`](ResourcePoolConfig::idle_timeout)). [`Pooled::destroy`] throws away a
//! resource the caller found broken.
//!
//! No hook wedges the pool: a `create` that does not answer within
//! [`create_timeout`](ResourcePoolConfig::create_timeout) (default 30 s) is dropped, gives
//! its place back, counts as a failed create and fails its `acquire` with
//! [`HookTimedOut`]; a `recycle` check that does not answer within
//! [`recycle_timeout`](ResourcePoolConfig::recycle_timeout) (default 5 s) fails the check;
//! a `destroy` cut short after [`destroy_timeout`](ResourcePoolConfig::destroy_timeout)
//! (default 5 s) drops the resource and is logged.
//!
//! The pool keeps `min_size` resources by itself: a background task (spawned on the
//! current Tokio runtime) creates the missing ones, one at a time, after the pool is built
//! and whenever a resource is destroyed or detached. It stops (dropping a `create` in
//! progress) when the last [`ResourcePool`] handle is dropped or the pool is closed, so it
//! never keeps the pool alive.
//!
//! Every resource goes through [`Lifecycle::destroy`] exactly once: when the pool throws it
//! away, or, for one given back after [`ResourcePool::close`] or held by a cancelled `acquire`, on a
//! task spawned on the current runtime (outside any runtime it can only be dropped, and is
//! counted in [`ResourcePoolSnapshot::dropped`]).
//!
//! A panic in a hook is caught: in `create` the `acquire` fails with
//! [`Panicked`], in `recycle` the resource is destroyed, in
//! `destroy` it is logged; the pool goes on.
//!
//! # Clone
//!
//! `ResourcePool` is a handle: clones share the same resources, limits and stats. Dropping
//! the last handle closes the pool (as [`ResourcePool::close`], without waiting): nobody
//! can borrow again, so the idle resources go through [`Lifecycle::destroy`] on spawned
//! tasks and lent ones when their guards give them back.
//!
//! # Cancellation
//!
//! Dropping an `acquire` future releases its place in the queue; a `create` running at
//! that moment is dropped (no resource exists yet), a resource being recycled is destroyed
//! with the hook on a spawned task.

//!
//! # Shape
//!
//! The crate follows palisade's one shape (`CONTRIBUTING.md`); the pool wraps no service, so
//! it has no layer: [`ResourcePool`] is its own handle. Its type parameter, `Hooks`, is the
//! pool's [`Lifecycle`], and [`Pooled`] guards name it too (as deadpool's `Object<M>` names
//! its manager).
//!
//! # Defaults
//!
//! Listed on [`ResourcePoolConfig`]: name `"pool"`, `min_size` 0, `max_size` 10, wait
//! without bound when full, no idle timeout, `create_timeout` 30 s, `recycle_timeout` 5 s,
//! `destroy_timeout` 5 s.
//!
//! This crate is part of [palisade](https://docs.rs/palisade); its minimum supported Rust
//! version is 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
pub mod error;
mod event;
mod lifecycle;
mod pool;
mod pooled;
mod shared;
mod snapshot;

pub use builder::ResourcePoolBuilder;
pub use config::ResourcePoolConfig;
pub use error::{HookTimedOut, Panicked, RecycleRefused};
pub use event::{DestroyReason, ResourcePoolEvent};
pub use lifecycle::{lifecycle_fn, Lifecycle, LifecycleFn};
pub use pool::ResourcePool;
pub use pooled::Pooled;
pub use snapshot::ResourcePoolSnapshot;
