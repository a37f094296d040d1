//! The shared vocabulary of [palisade](https://docs.rs/palisade): every pattern crate uses
//! these pieces and none re-invents them.
//!
//! - [`classify`]: one [`Classify`] trait that says whether a call
//!   succeeded, failed or should be ignored, whether it is retryable, and any server-given
//!   retry hint; with default, closure, HTTP (`http`) and gRPC (`grpc`) classifiers.
//! - [`rejection`]: the typed errors palisade layers return when they refuse a call, and
//!   [`find_rejection`] to find one inside any `BoxError`.
//! - [`respond`] (`http`): a layer that turns rejections into HTTP (or gRPC, with `grpc`)
//!   responses, so axum needs no `HandleErrorLayer`.
//! - [`event`] and [`metric`]: typed events to listeners and `tracing`, atomic counters read
//!   as snapshots, exported to the `metrics` facade with the `metrics` feature.
//! - [`config`]: [`ConfigError`], returned by every builder;
//!   [`duration`]: human-readable durations for `serde` configs.
//! - [`keyed`]: the bounded per-key map behind keyed breakers, limiters and bulkheads;
//!   [`rng`]: a lock-free seedable random number generator for jitter and chaos.
//! - [`clock`]: where limits and breakers read the time (tokio's clock, or `quanta` behind
//!   the `quanta` feature).
//! - [`time`]: deadline arithmetic that saturates instead of panicking (the policy for huge
//!   configured durations).
//! - [`when_full`]: [`WhenFull`], what a caller does when a limit has no room (refuse, or
//!   wait up to a bound); [`keyed::Unkeyed`]: what a keyed layer does with a request
//!   without a key.
//! - [`sync`]: the one lock-poisoning policy; [`service`]: [`ReadyCall`](service::ReadyCall),
//!   "wait until the inner service is ready, then call it"; [`panic`]:
//!   [`Panicked`](panic::Panicked), the error for user code that panicked on palisade's tasks.
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classify;
pub mod clock;
pub mod config;
pub mod duration;
pub mod event;
pub mod keyed;
pub mod metric;
pub mod panic;
pub mod rejection;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod respond;
pub mod rng;
pub mod service;
pub mod sync;
pub mod time;
pub mod when_full;

/// The error type that travels through tower stacks (`tower::BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use classify::{Classification, Classify, ClassifyExt, DefaultClassifier, Outcome};
pub use config::ConfigError;
pub use rejection::{find_rejection, Rejection, RejectionKind};
pub use when_full::WhenFull;
