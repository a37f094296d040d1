//! Fallback middleware for tower: when a call fails or a palisade layer refuses it, answer
//! from somewhere else.
//!
//! [`FallbackLayer`] wraps a service; when the inner call fails (as judged by a palisade-core
//! [`Classify`](palisade_core::Classify) classifier, by default every `Err`) or is refused by a
//! palisade layer ([`find_rejection`](palisade_core::find_rejection) finds a rejection in the
//! error), it answers from a fallback provider instead:
//!
//! - a closure `Fn(FallbackContext) -> impl Future<Output = Result<Res, E>>`
//!   ([`fallback_fn`](FallbackBuilder::fallback_fn)); the [`FallbackContext`] holds the error or
//!   the failed response, and with
//!   [`fallback_fn_with_request`](FallbackBuilder::fallback_fn_with_request) a clone of the
//!   request;
//! - another service ([`fallback_service`](FallbackBuilder::fallback_service));
//! - a chain of services tried in order until one answers
//!   ([`fallback_chain`](FallbackBuilder::fallback_chain)), the "provider fallback" of
//!   resilience libraries.
//!
//! [`TriggerOn`] chooses whether failures, rejections, or both (the default) start the
//! fallback. The layer's [`FallbackHandle`] reads counters and registers listeners for
//! [`FallbackEvent`]s (`on_event`).
//!
//! The common case is one line and cannot fail: [`FallbackLayer::new`]`(closure)`. The
//! builder ([`FallbackLayer::builder`]) sets the rest; its settings live in
//! [`FallbackConfig`] (name `"fallback"`, [`TriggerOn::FailuresAndRejections`]), which a
//! settings file can hold (feature `serde`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::rejection::CircuitOpen;
//! use palisade_core::BoxError;
//! use palisade_fallback::{FallbackContext, FallbackLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let layer = FallbackLayer::builder()
//!     .name("prices")
//!     .fallback_fn(|ctx: FallbackContext<u32, String>| async move {
//!         // Serve a cached answer; the context says why.
//!         assert!(ctx.rejection().is_some());
//!         Ok::<_, BoxError>("cached".to_owned())
//!     })
//!     .build()?;
//! let handle = layer.handle();
//!
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_: u32| async {
//!     Err::<String, BoxError>(CircuitOpen::new("backend", Duration::from_secs(5)).into())
//! }));
//! assert_eq!(svc.oneshot(7).await?, "cached");
//! assert_eq!(handle.snapshot().fallbacks_used, 1);
//! # Ok::<_, BoxError>(())
//! # }).unwrap();
//! ```
//!
//! # Requests
//!
//! Service fallbacks need the request a second time, so the layer clones every request before
//! calling the inner service: the service and chain variants require `Req: Clone`, as does
//! `fallback_fn_with_request`. The plain `fallback_fn` never clones and has no bound on the
//! request.
//!
//! # Cost
//!
//! On the pass path (no fallback) a call touches no shared counter (each service value
//! counts its calls and adds them to the shared counter every 64 calls and when dropped)
//! and costs one `Arc` clone: the response future must own the provider and counters in
//! case the inner call fails, even after the service is dropped. The service variants and
//! `fallback_fn_with_request` also clone the request. The response future is the inner
//! future plus a tag and the kept request. A fallback allocates the boxed inner error and
//! its attempt's future; the error chain is searched for a rejection only when the reason
//! is observed (a listener or `tracing`) or the trigger setting needs it.
//!
//! # Clone
//!
//! The layer keeps its provider, classifier and counters in an `Arc`: every service it builds
//! and every clone (axum clones a service per request) shares them and reports to one
//! [`FallbackHandle`]. A clone starts un-ready.
//!
//! # Errors
//!
//! The service answers `BoxError`: the inner error when no fallback is triggered, otherwise the
//! fallback's own error. When every provider of a chain fails, the last provider's error is
//! returned. The layer refuses nothing itself, so the crate has no error type (and no
//! `error` module) of its own.
//!
//! # Backpressure
//!
//! `poll_ready` is the inner service's. A palisade rejection (or a failure, per [`TriggerOn`])
//! returned by the inner `poll_ready` is kept and answered from the fallback on the next
//! `call`, so a layer that refuses at admission (bulkhead, rate limit) is covered too. Fallback
//! services are cloned when used and driven to readiness before they are called.
//!
//! # Panics
//!
//! Providers run inside the response future, on the caller's task, like any tower
//! service's code: a provider that panics panics that caller (a spawned task ends with a
//! panicking `JoinError`), and nothing else. The layer holds no lock while a provider runs,
//! so its shared state is not poisoned and later calls are served as usual; the panicked
//! call counts as triggered, neither used nor failed.
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
mod event;
pub mod future;
mod handle;
mod layer;
pub mod provider;
mod service;

pub use self::builder::{FallbackBuilder, NoProvider};
pub use self::config::{FallbackConfig, TriggerOn};
pub use self::event::{FallbackEvent, FallbackReason};
pub use self::handle::{FallbackHandle, FallbackSnapshot};
pub use self::layer::FallbackLayer;
pub use self::provider::{FallbackCause, FallbackContext};
pub use self::service::Fallback;
