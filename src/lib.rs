//! palisade: tower middleware for resilience and concurrency.
//!
//! Every pattern is a [`tower::Layer`] + [`tower::Service`] that stacks through
//! [`tower::ServiceBuilder`] around any inner service — an axum or hyper server, a tonic
//! client, a child process. This facade re-exports each pattern crate as a module behind a
//! feature of the same name, the shared vocabulary of `palisade-core` at its root, a
//! [`prelude`], and [`ServiceBuilderExt`], one `with_<pattern>` builder method per layer.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade::prelude::*;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .with_bulkhead(BulkheadLayer::builder().max_concurrent(64).build()?)
//!     .with_timeout(TimeoutLayer::new(Duration::from_secs(2)))
//!     .with_retry(RetryLayer::builder().max_attempts(3).build()?)
//!     .with_circuit_breaker(CircuitBreakerLayer::builder().consecutive_failures(5).build()?)
//!     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
//! assert_eq!(svc.oneshot(1).await?, 2);
//! # Ok(()) }
//! ```
//!
//! The vocabulary every pattern shares (always present):
//!
//! | module | what |
//! |---|---|
//! | [`classify`] | [`Classify`](classify::Classify): did a call succeed, fail, and may it be retried |
//! | [`rejection`] | the typed errors layers refuse calls with, [`find_rejection`](rejection::find_rejection) |
//! | `respond` (`http`) | rejections answered as HTTP / gRPC responses |
//! | [`event`] | typed events to listeners and `tracing` |
//! | [`config`], [`duration`] | [`ConfigError`] (with the field's full path), human durations for configs |
//! | [`when_full`] | [`WhenFull`]: refuse, or wait up to a bound, when a limit has no room |
//! | [`keyed`] | how keyed layers bound their keys; [`Unkeyed`](keyed::Unkeyed) for requests without one |
//! | [`clock`], [`time`] | where layers read the time; deadlines that saturate instead of panicking |
//! | [`panic`](mod@panic) | [`Panicked`](panic::Panicked): user code that panicked on palisade's tasks |
//!
//! The patterns, one feature each:
//!
//! | module | crate | feature |
//! |---|---|---|
//! | `timeout` | `palisade-timeout` | `timeout` |
//! | `retry` | `palisade-retry` | `retry` |
//! | `circuit_breaker` | `palisade-circuit-breaker` | `circuit-breaker` |
//! | `rate_limit` | `palisade-rate-limit` | `rate-limit` |
//! | `bulkhead` | `palisade-bulkhead` | `bulkhead` |
//! | `pool` | `palisade-pool` | `pool` |
//! | `resource_pool` | `palisade-resource-pool`: connections and clients checked out and back | `resource-pool` |
//! | `pipeline` | `palisade-pipeline` | `pipeline` |
//! | `process` | `palisade-process` | `process` |
//! | `fallback` | `palisade-fallback` | `fallback` |
//! | `chaos` | `palisade-chaos` | `chaos` |
//! | `scope` | `palisade-scope`: scopes, graceful drain, poller, lifecycle hooks | `scope` |
//! | `redis` | `palisade-redis`: fleet-wide rate limit, bulkhead and breaker over Redis | `redis` |
//!
//! To name a stack, store it in a struct or an axum state, and call it from `tokio::spawn` or
//! an axum handler (and what to do about rustc's "implementation of `From` is not general
//! enough"), read the [`guide`].
//!
//! Integrations are opt-in: `http` (HTTP classifier, rejection → response layer), `grpc`
//! (gRPC classifier and mapping, tonic), `metrics` (the `metrics` facade), `serde`
//! (deserialisable configs); `full` turns on everything.
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The shared vocabulary, at the root (never as a module named `core`, which would shadow
// the built-in `core` under a glob import).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[doc(inline)]
pub use palisade_core::respond;
#[doc(inline)]
pub use palisade_core::{
    classify, clock, config, duration, event, keyed, panic, rejection, time, when_full, BoxError,
    ConfigError, WhenFull,
};

#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
#[doc(inline)]
pub use palisade_bulkhead as bulkhead;
#[cfg(feature = "chaos")]
#[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
#[doc(inline)]
pub use palisade_chaos as chaos;
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
#[doc(inline)]
pub use palisade_circuit_breaker as circuit_breaker;
#[cfg(feature = "fallback")]
#[cfg_attr(docsrs, doc(cfg(feature = "fallback")))]
#[doc(inline)]
pub use palisade_fallback as fallback;
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
#[doc(inline)]
pub use palisade_pipeline as pipeline;
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
#[doc(inline)]
pub use palisade_pool as pool;
#[cfg(feature = "process")]
#[cfg_attr(docsrs, doc(cfg(feature = "process")))]
#[doc(inline)]
pub use palisade_process as process;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
#[doc(inline)]
pub use palisade_rate_limit as rate_limit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use palisade_redis as redis;
#[cfg(feature = "resource-pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "resource-pool")))]
#[doc(inline)]
pub use palisade_resource_pool as resource_pool;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
#[doc(inline)]
pub use palisade_retry as retry;
#[cfg(feature = "scope")]
#[cfg_attr(docsrs, doc(cfg(feature = "scope")))]
#[doc(inline)]
pub use palisade_scope as scope;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
#[doc(inline)]
pub use palisade_timeout as timeout;

mod builder;
#[cfg(all(feature = "retry", feature = "circuit-breaker"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "retry", feature = "circuit-breaker"))))]
pub mod guide;
pub mod prelude;
#[cfg(feature = "registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
pub mod registry;

pub use builder::ServiceBuilderExt;

/// The README's code blocks, compiled as doctests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
