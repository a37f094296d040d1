//! Every error of palisade-redis: [`BackendError`] (a Redis call gave no answer), and
//! palisade-core's rejections, re-exported here: [`CostExceedsCapacity`] (a rate-limit check
//! that can never pass: its weight is above a tier's burst), [`RateLimited`],
//! [`BulkheadFull`], [`CircuitOpen`].

use std::sync::Arc;
use std::time::Duration;

pub use palisade_core::rejection::{BulkheadFull, CircuitOpen, CostExceedsCapacity, RateLimited};

/// Why a Redis call gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The call took longer than the backend's timeout.
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// Redis (or the connection) answered with an error.
    #[error("redis error: {0}")]
    Redis(Arc<redis::RedisError>),
    /// palisade's breaker around the connection is open: Redis was not asked.
    #[error("the circuit breaker around redis is open")]
    BreakerOpen,
    /// The answer had an unexpected shape.
    #[error("unexpected redis reply: {0}")]
    Reply(String),
}
