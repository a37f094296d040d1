//! Chaos middleware for tower: inject faults, substitute responses, latency and hangs on
//! purpose, to test how the rest of a stack copes (the chaos strategies of Polly v8).
//!
//! [`ChaosLayer`] decides, call by call and each at its own injection rate, to
//!
//! - **fault**: answer an error instead of calling the inner service (from a closure, or
//!   [`InjectedFault`] by default);
//! - **outcome**: answer a substitute response from a closure instead of calling the inner
//!   service;
//! - **latency**: wait a fixed or closure-chosen duration (`tokio::time::sleep`) before going
//!   on;
//! - **hang**: call the inner service but never answer, until the response future is dropped.
//!
//! Injection is switched on and off, and every rate changed, at run time through the
//! [`ChaosHandle`] (atomics: nothing on the call path takes a lock). An optional predicate
//! limits injection to some requests. With a [`seed`](ChaosBuilder::seed) the decisions are
//! the same on every run.
//!
//! The common case is one line and cannot fail: [`ChaosLayer::new`]`(fault_rate)`. The
//! builder ([`ChaosLayer::builder`]) sets the rest; its settings live in [`ChaosConfig`]
//! (name `"chaos"`, enabled, every rate 0, a seed from entropy), which a settings file can
//! hold (feature `serde`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_chaos::{ChaosLayer, InjectedFault};
//! use palisade_core::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let layer = ChaosLayer::builder()
//!     .name("backend")
//!     .seed(7)
//!     .fault_rate(1.0)
//!     .latency_rate(0.1)
//!     .latency(Duration::from_millis(20))
//!     .build()?;
//! let handle = layer.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
//!
//! let err = svc.clone().oneshot(1).await.unwrap_err();
//! assert!(err.is::<InjectedFault>());
//!
//! // Switched off at run time: calls pass untouched.
//! handle.disable();
//! assert_eq!(svc.oneshot(2).await?, 2);
//! assert_eq!(handle.snapshot().faults, 1);
//! # Ok::<_, BoxError>(())
//! # }).unwrap();
//! ```
//!
//! # How a call is decided
//!
//! When the layer is enabled and the predicate (if any) accepts the request, the strategies
//! are drawn in this order: latency, then hang, fault, outcome — the first of these three that
//! is injected wins, and latency (if injected) delays whatever follows. A rate of 0 never
//! injects and 1 always does, neither drawing a number; any other rate draws one number from
//! the layer's random generator (a lock-free SplitMix64, `below(1_000_000) < rate in
//! parts per million`). Rates are kept in parts per million. The predicate is not asked
//! while the layer is disabled or every rate is 0.
//!
//! A layer that is disabled, or whose rates are all 0, costs a few relaxed atomic loads per
//! call: no counter, no draw, no allocation, and the response future is the inner future
//! plus a tag. An injection allocates its state once.
//!
//! # Backpressure and requirements
//!
//! `poll_ready` is the inner service's. A delayed call is made after the delay on the service
//! that was made ready (the `mem::replace` pattern of tower's `AsyncFilter`), so the inner
//! service must be `Clone`. A fault or an outcome does not call the inner service: its
//! readiness stays reserved for the next call.
//!
//! # Clone
//!
//! The layer keeps its settings, generator and counters in an `Arc`: every service it builds
//! and every clone shares them, so one [`ChaosHandle`] steers them all and a seeded run makes
//! the same decisions whichever clone takes a call.
//!
//! # Errors
//!
//! The service answers `BoxError`: injected faults, and the inner service's errors boxed. A
//! generator or predicate that panics answers that call with core's [`Panicked`]
//! (component `"hook"`, the layer's name, the hook — `inject_when`, `fault_with`,
//! `outcome_with`, `latency_with` — as its site; the inner service is not called, its
//! readiness stays reserved); a listener that panics misses its event. Neither reaches the task that made the call.
//!
//! # Placement
//!
//! Put the layer innermost, right around the service it stands for, so that the layers
//! above it (retry, breaker, timeout, fallback) meet the injected trouble as they would meet
//! the real one. A hang calls the inner service, lets its call finish, drops the answer and
//! stays pending until the caller gives up (a timeout above it, or a client disconnect).
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
pub mod error;
mod event;
pub mod future;
mod handle;
mod layer;
mod service;

pub use self::builder::ChaosBuilder;
pub use self::config::ChaosConfig;
pub use self::error::{InjectedFault, Panicked};
pub use self::event::ChaosEvent;
pub use self::handle::{ChaosHandle, ChaosRates, ChaosSnapshot};
pub use self::layer::ChaosLayer;
pub use self::service::Chaos;
