//! Pools for [tower](https://docs.rs/tower): [`Pool`], an autoscaling, self-healing
//! pool of services. (A pool of resources checked out and back, deadpool-style, is the
//! `palisade-resource-pool` crate.)
//!
//! # `Pool`
//!
//! A [`Pool`] is a [`Service`](tower_service::Service) that owns a set of *members*
//! (services made on demand by a `MakeService` or a closure, see [`make_fn`]) and sends each
//! request to one of them:
//!
//! - **Dispatch**: to a ready member with room (`member_concurrency` calls each), chosen
//!   round-robin, least-in-flight, or by power of two choices on in-flight calls or
//!   peak-EWMA latency ([`Strategy`]).
//! - **Queue**: when no member is free, requests wait in a bounded queue (FIFO, or by a
//!   priority computed from the request) of [`max_queue`](PoolConfig::max_queue); a full
//!   queue refuses with [`Overloaded`](palisade_core::rejection::Overloaded) at once
//!   (default) or holds `poll_ready` for up to a bound
//!   ([`when_full`](PoolConfig::when_full), palisade-core's
//!   [`WhenFull`](palisade_core::when_full::WhenFull)).
//! - **Autoscaling** between `min_size` and `max_size`: a member is made when utilisation or
//!   the queue crosses a threshold, retired after sustained low utilisation or an idle
//!   timeout; one member is made at a time, failures are retried with exponential backoff,
//!   and making never blocks dispatch to existing members.
//! - **Health**: a member whose `poll_ready` fails, whose calls fail N times in a row (per a
//!   palisade-core [`Classify`](palisade_core::classify::Classify)er), or that fails a
//!   periodic health check is evicted and replaced; its calls in flight finish. A member
//!   that panics (in `poll_ready`, `call`, its response future or a health check) fails
//!   only the request involved, with [`Panicked`], and is evicted and
//!   replaced: the pool's worker never dies of user code.
//! - **Handle**: [`PoolHandle`] gives [`PoolSnapshot`]s (per-member load, completed and failed
//!   totals), [`PoolEvent`]s (including [`PoolEvent::Completed`] per call: which member,
//!   how long), operator resizing ([`scale_to`](PoolHandle::scale_to),
//!   [`scale_up`](PoolHandle::scale_up), [`scale_down`](PoolHandle::scale_down)) and a
//!   graceful [`shutdown`](PoolHandle::shutdown); [`Pool::submit_batch`] runs many
//!   requests and returns the results in order
//!   ([`submit_batch_with_priority`](Pool::submit_batch_with_priority) ranks them).
//! - **Policy**: growth and shrinking are decided by a [`ScalingPolicy`](scaling::ScalingPolicy)
//!   (default: [`UtilisationPolicy`](scaling::UtilisationPolicy)).
//!
//! ## Example: a pool scaling under load
//!
//! Each member here is a plain service standing in for a worker process (one job at a time,
//! 100 ms per job); the pool grows from one member to four as jobs queue up, and shrinks
//! back once they are done.
//!
//! ```
//! use std::time::Duration;
//! use palisade_pool::{make_fn, PoolEvent, Pool};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let make = make_fn(|| async {
//!     Ok::<_, std::io::Error>(service_fn(|job: u64| async move {
//!         tokio::time::sleep(Duration::from_millis(100)).await; // the work
//!         Ok::<_, std::io::Error>(job * 2)
//!     }))
//! });
//! let pool = Pool::builder()
//!     .name("workers")
//!     .min_size(1)
//!     .max_size(4)
//!     .scale_down(0.2, Duration::from_secs(5))
//!     .on_event(|e: &PoolEvent| tracing::info!(event = ?e, "pool"))
//!     .build(make)?;
//! let handle = pool.handle();
//!
//! // Twenty jobs at once: the pool scales up to four members to serve them.
//! let results = pool.submit_batch(0..20).await;
//! assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), (0..20).map(|j| j * 2).collect::<Vec<_>>());
//! assert_eq!(handle.snapshot().members.len(), 4);
//!
//! // Quiet for a while: it scales back down to one.
//! tokio::time::sleep(Duration::from_secs(30)).await;
//! assert_eq!(handle.snapshot().members.len(), 1);
//!
//! // One more job through the ordinary tower interface, then a graceful shutdown.
//! let mut svc = pool.clone();
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! let report = handle.shutdown(Duration::from_secs(1)).await;
//! assert!(report.drained);
//! # Ok(())
//! # }
//! ```
//!
//! # Provider selection
//!
//! [`provider::Select`] sends each request to the top-ranked healthy provider of a tower
//! `Discover` stream (by cost, latency, failure rate or your ranking) and falls back down
//! the ranking on a classified failure.
//!
//! This crate is part of [palisade](https://docs.rs/palisade); its minimum supported Rust
//! version is 1.85.
//!
//! # Shape
//!
//! The pool follows palisade's one shape (`CONTRIBUTING.md`) with one deviation: it has no
//! `PoolLayer`, because it wraps no inner service — it owns the services it makes.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
pub mod error;
pub mod event;
pub mod future;
mod handle;
mod make;
mod member;
pub mod provider;
pub mod scaling;
mod service;
mod shared;
mod sizing;
mod worker;

pub use builder::PoolBuilder;
pub use config::{PoolConfig, Strategy};
pub use error::{NoProvider, Panicked};
pub use event::{EvictReason, PoolEvent, ScaleDownReason, ScaleUpReason};
pub use handle::{MemberSnapshot, PoolHandle, PoolSnapshot, ShutdownReport};
pub use make::{make_fn, MakeFn};
pub use service::Pool;
