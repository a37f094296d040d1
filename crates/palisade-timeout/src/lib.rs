//! Timeouts for tower services, with a typed rejection, a timeout chosen per request, and a
//! counter of the calls that ran out of time.
//!
//! [`TimeoutLayer`] bounds each call: when the time runs out the inner future is dropped and
//! the caller gets palisade's [`TimedOut`] rejection (the layer's name and
//! the timeout), which `palisade_core::respond` turns into HTTP 504 or gRPC
//! DEADLINE_EXCEEDED and `palisade_core::rejection::find_rejection` finds through any error
//! chain. The timeout is fixed ([`TimeoutLayer::new`], as tower's) or chosen per request by a
//! function `Fn(&Req) -> Option<Duration>` (`None`: no timeout for that request) — for
//! instance from the `grpc-timeout` header the caller sent, with [`grpc_timeout`] (feature
//! `http`).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use std::time::Duration;
//! use palisade_timeout::error::TimedOut;
//! use palisade_timeout::TimeoutLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let backend = service_fn(|ms: u64| async move {
//!     tokio::time::sleep(Duration::from_millis(ms)).await;
//!     Ok::<_, std::convert::Infallible>("done")
//! });
//!
//! // The common case: one timeout for every call.
//! let layer = TimeoutLayer::new(Duration::from_millis(100));
//! let handle = layer.handle();
//! let svc = ServiceBuilder::new().layer(layer).service(backend);
//! assert_eq!(svc.clone().oneshot(50).await?, "done");
//! assert!(svc.oneshot(500).await.unwrap_err().is::<TimedOut>());
//! assert_eq!(handle.snapshot().timed_out, 1);
//!
//! // The rest through the builder: a name, listeners, a timeout per request (here the
//! // request carries its own budget, capped at 100 ms).
//! let layer = TimeoutLayer::builder()
//!     .name("backend")
//!     .per_request(|ms: &u64| Some(Duration::from_millis((*ms).min(100))))
//!     .on_event(|e| tracing::info!(event = ?e, "timeout"))
//!     .build()?;
//! let svc = ServiceBuilder::new().layer(layer).service(backend);
//! let err = svc.oneshot(500).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<TimedOut>().unwrap().name(), "backend");
//! # Ok(()) }
//! ```
//!
//! # Defaults
//!
//! [`TimeoutConfig`]: name `"timeout"`, timeout 1 s (Resilience4j's `TimeLimiter`). The
//! builder refuses a zero timeout (in a settings file it is a mistake); `new(Duration::ZERO)`
//! means what it means for tower (see [`TimeoutLayer::new`]). Durations saturate: a huge
//! timeout is "effectively never", never a panic.
//!
//! # Tower contract
//!
//! `poll_ready` is the inner service's (a timeout reserves nothing). The inner future is
//! polled before the timer, so an answer that is ready wins. Dropping the response future
//! drops the inner future.
//!
//! **When the time starts** (a deliberate difference from tower's `Timeout`, which reads
//! the clock and creates its timer in `call`): the timeout is counted from the first poll
//! of the response future at which the inner future is pending, and the clock is read and
//! the timer registered only then. A call that answers on its first poll reads no clock and
//! registers no timer; work the inner future does synchronously inside that first poll,
//! and time between `call` and the first poll, are not counted.
//!
//! # Errors
//!
//! The service's error is [`BoxError`](palisade_core::BoxError): the inner error (boxed) or
//! [`TimedOut`].
//!
//! # Events and counters
//!
//! A timeout publishes [`TimeoutEvent::TimedOut`] to listeners registered with `on_event`
//! (builder or [`TimeoutHandle::on_event`]) and to `tracing` (target `palisade`), and counts
//! into [`TimeoutSnapshot::timed_out`], exported with the `metrics` feature as
//! `palisade_timeout_timed_out_total{name}`. A call that finishes in time touches no shared
//! counter.
//!
//! # Clone
//!
//! The layer, its services and their clones share one counter and one set of listeners.
//!
//! This crate is part of [palisade](https://docs.rs/palisade); its minimum supported Rust
//! version is 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
pub mod error;
mod event;
pub mod future;
#[cfg(feature = "http")]
mod grpc;
mod handle;
mod layer;
mod policy;
mod service;

pub use builder::TimeoutBuilder;
pub use config::TimeoutConfig;
pub use error::TimedOut;
pub use event::TimeoutEvent;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use grpc::grpc_timeout;
pub use handle::{TimeoutHandle, TimeoutSnapshot};
pub use layer::TimeoutLayer;
pub use policy::{FixedTimeout, PerRequest, TimeoutPolicy};
pub use service::Timeout;
