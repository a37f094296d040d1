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
//! - [`event`]: typed events to listeners and `tracing` (structured fields). Every layer's
//!   counters are read as snapshots from its handle and, with the `metrics` feature, exported
//!   to the `metrics` facade with HELP texts and `reason`/`outcome`/`state` labels; a recorder
//!   installed after the layers were built receives them too.
//! - [`config`]: [`ConfigError`], returned by every builder, naming the field's full path;
//!   [`duration`]: human-readable durations for `serde` configs.
//! - [`when_full`]: [`WhenFull`], what a caller does when a limit has no room (refuse, or
//!   wait up to a bound).
//! - [`keyed`]: how keyed layers bound their keys, and [`keyed::Unkeyed`] for requests
//!   without a key.
//! - [`clock`]: where limits and breakers read the time (tokio's clock, or `quanta` behind
//!   the `quanta` feature); [`time`]: deadline arithmetic that saturates instead of panicking
//!   (the policy for huge configured durations).
//! - [`sync`]: the one lock-poisoning policy; [`service`]: [`ReadyCall`](service::ReadyCall),
//!   "wait until the inner service is ready, then call it"; [`panic`](mod@panic):
//!   [`Panicked`](panic::Panicked), the error for user code that panicked on palisade's tasks.
//! - [`make_fn`](mod@make_fn): a `Service<()>` from a closure, the `MakeService` pools and
//!   supervised stages call for a fresh inner service.
//!
//! Helpers that exist only for palisade's own crates (the atomic metric cells, the keyed map,
//! the random number generator) are in `__private`: hidden, with no stability promise.
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classify;
pub mod clock;
pub mod config;
pub mod duration;
pub mod event;
pub mod keyed;
pub mod make_fn;
#[doc(hidden)]
pub mod metric;
pub mod panic;
pub mod rejection;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod respond;
#[doc(hidden)]
pub mod rng;
pub mod service;
mod striped;
pub mod sync;
mod tally;
pub mod time;
pub mod when_full;

/// The error type that travels through tower stacks (`tower::BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use classify::{Classification, Classify, ClassifyExt, DefaultClassifier, Outcome};
pub use config::ConfigError;
pub use rejection::{find_rejection, Rejection, RejectionKind};
pub use when_full::WhenFull;

/// Helpers public only for palisade's own crates. **No stability promise**: anything here
/// may change or go in any release; do not use it from outside palisade.
///
/// The old paths (`palisade_core::metric`, `palisade_core::rng`, `palisade_core::keyed::
/// {KeyedMap, Forget, Full, WarnOnce}`) still work, hidden, while the pattern crates move here.
#[doc(hidden)]
pub mod __private {
    pub use crate::keyed::{Forget, Full, KeyedMap, WarnOnce};
    pub use crate::metric::{Counter, Gauge, Histogram, StateGauge};
    pub use crate::rng::AtomicRng;
    pub use crate::striped::{Slots, StripedCounter, OWNED as OWNED_STRIPES, SHARED as SHARED_STRIPES};
    pub use crate::tally::{Tallied, Tally};
}
