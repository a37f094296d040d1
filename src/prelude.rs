//! The names most stacks need: `use palisade::prelude::*;`.

pub use crate::ServiceBuilderExt;
#[cfg(feature = "grpc")]
pub use palisade_core::classify::GrpcClassifier;
#[cfg(feature = "http")]
pub use palisade_core::classify::HttpClassifier;
pub use palisade_core::classify::{Classification, Classify, ClassifyExt, DefaultClassifier, Outcome};
pub use palisade_core::rejection::{find_rejection, Rejection, RejectionKind};
#[cfg(feature = "grpc")]
pub use palisade_core::respond::GrpcRejectionLayer;
#[cfg(feature = "http")]
pub use palisade_core::respond::HttpRejectionLayer;
pub use palisade_core::{BoxError, ConfigError};

#[cfg(feature = "bulkhead")]
pub use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
#[cfg(feature = "chaos")]
pub use palisade_chaos::ChaosLayer;
#[cfg(feature = "circuit-breaker")]
pub use palisade_circuit_breaker::{CircuitBreakerLayer, State as CircuitState};
#[cfg(feature = "fallback")]
pub use palisade_fallback::FallbackLayer;
#[cfg(feature = "rate-limit")]
pub use palisade_rate_limit::{Quota, RateLimitLayer};
#[cfg(feature = "retry")]
pub use palisade_retry::{timeout::TimeoutLayer, Backoff, Jitter, RetryBudget, RetryLayer};
