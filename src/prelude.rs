//! The names most stacks need: `use palisade::prelude::*;`.
//!
//! [`ServiceBuilderExt`](crate::ServiceBuilderExt) is brought in anonymously (`as _`): its
//! methods (`with_bulkhead`, `with_retry`, …) are in scope, its name is not. tower-http has a trait
//! of the same name, and a glob import loses to a named one, so with a named export
//! `use tower_http::ServiceBuilderExt; use palisade::prelude::*;` would silently hide
//! palisade's methods. Both sets of methods work side by side:
//!
//! ```
//! use palisade::prelude::*;
//! use tower::ServiceBuilder;
//! # fn main() -> Result<(), BoxError> {
//! // a `ServiceBuilderExt` of your own (or tower-http's) does not shadow palisade's methods
//! #[allow(dead_code)]
//! trait ServiceBuilderExt {}
//! # #[cfg(feature = "bulkhead")]
//! let _builder = ServiceBuilder::new().with_bulkhead(BulkheadLayer::builder().max_concurrent(8).build()?);
//! # Ok(()) }
//! ```
//!
//! To name the trait (in a bound or a `use`), import it as `palisade::ServiceBuilderExt`.

pub use crate::ServiceBuilderExt as _;
#[cfg(feature = "grpc")]
pub use palisade_core::classify::GrpcClassifier;
#[cfg(feature = "http")]
pub use palisade_core::classify::HttpClassifier;
pub use palisade_core::classify::{Classification, Classify, ClassifyExt, DefaultClassifier, Outcome};
pub use palisade_core::keyed::Unkeyed;
pub use palisade_core::rejection::{find_rejection, Rejection, RejectionKind};
#[cfg(feature = "grpc")]
pub use palisade_core::respond::GrpcRejectionLayer;
#[cfg(feature = "http")]
pub use palisade_core::respond::HttpRejectionLayer;
pub use palisade_core::{BoxError, ConfigError, WhenFull};

#[cfg(feature = "bulkhead")]
pub use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
#[cfg(feature = "chaos")]
pub use palisade_chaos::ChaosLayer;
#[cfg(feature = "circuit-breaker")]
pub use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
#[cfg(feature = "fallback")]
pub use palisade_fallback::FallbackLayer;
#[cfg(feature = "rate-limit")]
pub use palisade_rate_limit::{Quota, RateLimitLayer};
#[cfg(feature = "retry")]
pub use palisade_retry::{Backoff, Jitter, RetryBudget, RetryLayer};
#[cfg(feature = "timeout")]
pub use palisade_timeout::TimeoutLayer;
