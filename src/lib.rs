//! palisade: tower middleware for resilience and concurrency.
//!
//! Every pattern is a [`Layer`] + [`Service`] that stacks through [`ServiceBuilder`] around
//! any inner service — an axum or hyper server, a tonic client, a child process. This facade
//! holds all of palisade's API in one place: each pattern crate is a module here (its pages
//! inlined, a feature of the same name), the shared vocabulary of `palisade-core` sits at the
//! root, with a [`prelude`] and [`ServiceBuilderExt`], one `with_<pattern>` builder method per
//! layer.
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
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) }));
//! assert_eq!(svc.oneshot(1).await?, 2);
//! # Ok(()) }
//! ```
//!
//! Every layer has an infallible `XLayer::new(..)` for its common case
//! (`TimeoutLayer::new(d)`, `BulkheadLayer::new(32)`, `RetryLayer::new(3)`) and a builder,
//! `XLayer::builder()`, whose `build()` checks the settings and names the field that is wrong
//! in a [`ConfigError`]. Every setting lives once, in the pattern's `XConfig` (its default and
//! its meaning on the field's page), which is also the form a settings file takes (feature
//! `serde`).
//!
//! # Guide
//!
//! Whole stacks, each compiled and run as a test:
//!
//! - [an axum server][axum-server]: HTTP rejections, a per-IP rate limit, a bulkhead, a
//!   timeout and a circuit breaker;
//! - [a hyper or tonic client][http-client]: a total timeout, retry with a budget, a circuit
//!   breaker and a timeout per attempt;
//! - [a pool of worker processes][process-pool]: `MakeWorker` under a `Pool`, behind a
//!   bulkhead and a retry;
//! - [a pipeline][pipeline-recipe]: typed stages over a stream, a retry on one stage;
//! - [naming, storing and spawning a stack][guide] (and rustc's "implementation of `From` is
//!   not general enough").
//!
//! The README's "Layer order" says which layer goes outside which, and why.
//!
//! # Modules
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
//! | [`make_fn`](mod@make_fn) | a `MakeService` from a closure, for pools and supervised stages |
//! | [`panic`](mod@panic) | [`Panicked`](panic::Panicked): user code that panicked on palisade's tasks |
//! | [`service`], [`sync`] | machinery the pattern crates share: [`ReadyCall`](service::ReadyCall), the one lock-poisoning policy |
//!
//! The patterns, one feature each (**bold**: on by default):
//!
//! | module | crate | feature |
//! |---|---|---|
//! | `timeout` | `palisade-timeout` | **`timeout`** |
//! | `retry` | `palisade-retry`: retry, hedging, budgets, adaptive throttling, HTTP body replay | **`retry`** |
//! | `circuit_breaker` | `palisade-circuit-breaker` | **`circuit-breaker`** |
//! | `rate_limit` | `palisade-rate-limit`: GCRA and window algorithms, keyed limits, tiers | **`rate-limit`** |
//! | `bulkhead` | `palisade-bulkhead`: fixed and adaptive concurrency limits | **`bulkhead`** |
//! | `fallback` | `palisade-fallback` | **`fallback`** |
//! | `chaos` | `palisade-chaos`: fault injection | **`chaos`** |
//! | `pool` | `palisade-pool`: a pool of inner services behind one `Service` | `pool` |
//! | `resource_pool` | `palisade-resource-pool`: connections and clients checked out and back | `resource-pool` |
//! | `pipeline` | `palisade-pipeline` | `pipeline` |
//! | `process` | `palisade-process`: child processes and worker processes | `process` |
//! | `scope` | `palisade-scope`: scopes, graceful drain, poller, lifecycle hooks | `scope` |
//! | `redis` | `palisade-redis`: fleet-wide rate limit, bulkhead and breaker over Redis | `redis` |
//! | `registry` | this crate: named policies from one config file (TOML, YAML, JSON), a stack per policy, handles by name, reload | `registry` |
//!
//! (A module whose feature is off is absent; these docs, like docs.rs's, are built with
//! every feature, each item marked with the feature it needs.)
//!
//! # Features
//!
//! The default features are the patterns that need no third-party crate beyond the ones
//! `palisade-core` needs anyway (tower, tokio, pin-project-lite, thiserror, tracing): with
//! them `cargo tree -e normal` lists 14 third-party crates, the same as with no feature at
//! all. The rest is opt-in, as tower's and tower-http's features are: the patterns above
//! without bold, and the integrations `http` (HTTP classifier, rejection → response layer:
//! what an axum or hyper stack wants), `grpc` (gRPC classifier and mapping, tonic), `metrics`
//! (the `metrics` facade), `serde` (configs from files), `quanta` (the fast clock for rate
//! limits and breakers); `full` turns on everything.
//!
//! ```toml
//! palisade = { version = "0.1", features = ["http"] }  # an axum server or a hyper client
//! palisade = { version = "0.1", features = ["full"] }
//! ```
//!
//! Minimum supported Rust version: 1.85.
//!
//! [`Layer`]: https://docs.rs/tower/0.5/tower/trait.Layer.html
//! [`Service`]: https://docs.rs/tower/0.5/tower/trait.Service.html
//! [`ServiceBuilder`]: https://docs.rs/tower/0.5/tower/struct.ServiceBuilder.html
//!
// The guide is here when the features its recipes need are on (as on docs.rs), else on docs.rs.
#![cfg_attr(
    all(
        feature = "timeout",
        feature = "retry",
        feature = "circuit-breaker",
        feature = "rate-limit",
        feature = "bulkhead",
        feature = "http",
        feature = "pool",
        feature = "process",
        feature = "pipeline"
    ),
    doc = "[guide]: crate::guide\n[axum-server]: crate::guide::axum_server\n[http-client]: crate::guide::http_client\n[process-pool]: crate::guide::process_pool\n[pipeline-recipe]: crate::guide::pipeline"
)]
#![cfg_attr(
    not(all(
        feature = "timeout",
        feature = "retry",
        feature = "circuit-breaker",
        feature = "rate-limit",
        feature = "bulkhead",
        feature = "http",
        feature = "pool",
        feature = "process",
        feature = "pipeline"
    )),
    doc = "[guide]: https://docs.rs/palisade/latest/palisade/guide/index.html\n[axum-server]: https://docs.rs/palisade/latest/palisade/guide/axum_server/index.html\n[http-client]: https://docs.rs/palisade/latest/palisade/guide/http_client/index.html\n[process-pool]: https://docs.rs/palisade/latest/palisade/guide/process_pool/index.html\n[pipeline-recipe]: https://docs.rs/palisade/latest/palisade/guide/pipeline/index.html"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The shared vocabulary, at the root (never as a module named `core`, which would shadow
// the built-in `core` under a glob import).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[doc(inline)]
pub use palisade_core::respond;
#[doc(inline)]
pub use palisade_core::{
    classify, clock, config, duration, event, keyed, make_fn, panic, rejection, service, sync, time,
    when_full, BoxError, ConfigError, WhenFull,
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
// The guide: documentation only, present with the features its recipes need.
#[cfg(all(
    feature = "timeout",
    feature = "retry",
    feature = "circuit-breaker",
    feature = "rate-limit",
    feature = "bulkhead",
    feature = "http",
    feature = "pool",
    feature = "process",
    feature = "pipeline"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "timeout",
        feature = "retry",
        feature = "circuit-breaker",
        feature = "rate-limit",
        feature = "bulkhead",
        feature = "http",
        feature = "pool",
        feature = "process",
        feature = "pipeline"
    )))
)]
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
