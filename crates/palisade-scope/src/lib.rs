//! Structured concurrency for [tower](https://docs.rs/tower): [`Scope`]s that own their
//! work, [`ScopeLayer`] for graceful shutdown of a service stack, scoped resources, a
//! controllable [`Poller`] and lifecycle [`hooks`].
//!
//! - A [`Scope`] is a tree node built on tokio-util's `CancellationToken` and
//!   `TaskTracker`: cancelling a parent cancels every descendant; tasks spawned in it
//!   ([`Scope::spawn`](crate::Scope::spawn)) and requests through a [`ScopeLayer`] are counted in flight;
//!   [`Scope::close`] stops admitting, waits up to a deadline, cancels the rest and reports
//!   how many finished and how many were cancelled; values [provided](Scope::provide) to it
//!   are torn down exactly once, in reverse order, when it ends.
//! - [`ScopeLayer`]: requests in flight end with [`Cancelled`](error::Cancelled) when the
//!   scope is cancelled (the inner future is dropped); new ones are refused with
//!   palisade-core's [`Closed`](palisade_core::rejection::Closed) (`503` over HTTP).
//! - [`Poller`]: polls a `Service<()>` on an interval with jitter and palisade-retry's
//!   backoff on failure; `snapshot()`, `stop()`, `start()`, `poll_now()`, a `watch` channel
//!   of the latest value (`latest()`); it stops when its scope ends.
//! - [`hooks::HooksLayer`]: on request, on response (outcome and duration), on cancel, on
//!   dispose, for any service; panicking hooks are contained.
//!
//! # Example: graceful shutdown
//!
//! ```
//! use std::time::Duration;
//! use palisade_scope::{Scope, ScopeLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let scope = Scope::new("server");
//! let svc = ServiceBuilder::new()
//!     .layer(ScopeLayer::new(scope.clone()))
//!     .service(service_fn(|()| async {
//!         tokio::time::sleep(Duration::from_secs(2)).await;
//!         Ok::<_, std::io::Error>("done")
//!     }));
//! let call = tokio::spawn(svc.clone().oneshot(()));
//! tokio::task::yield_now().await;
//! // SIGTERM: stop admitting, give in-flight work 10 s.
//! let report = scope.close(Duration::from_secs(10)).await;
//! assert_eq!((report.finished, report.cancelled), (1, 0));
//! assert_eq!(call.await.unwrap().unwrap(), "done");
//! assert!(svc.oneshot(()).await.is_err()); // 503 over HTTP
//! # }
//! ```
//!
//! This crate is part of [palisade](https://docs.rs/palisade); its minimum supported Rust
//! version is 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod future;
pub mod hooks;
mod layer;
pub mod poller;
mod resource;
mod scope;
mod service;

pub use layer::ScopeLayer;
pub use poller::{PollOutcome, Poller, PollerBuilder, PollerConfig, PollerSnapshot};
pub use scope::{DrainReport, Scope, ScopeBuilder, ScopeConfig, ScopeSnapshot, ScopeTask};
pub use service::ScopeService;
