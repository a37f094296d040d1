//! Every error of palisade-redis: [`BackendError`] (a Redis call gave no answer) and
//! [`ExceedsCapacity`] (a rate-limit check that can never pass). Refusals of the fleet-wide
//! layers are palisade-core's rejections ([`RateLimited`], [`BulkheadFull`], [`CircuitOpen`]),
//! re-exported here.

use std::sync::Arc;
use std::time::Duration;

pub use palisade_core::rejection::{BulkheadFull, CircuitOpen, RateLimited};

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

/// A check that can never pass: the weight is above a tier's capacity.
#[derive(Debug, Clone, thiserror::Error)]
#[error("weight {weight} exceeds the capacity {capacity} of tier {tier}")]
pub struct ExceedsCapacity {
    /// The weight asked for.
    pub weight: u64,
    /// The tier's burst.
    pub capacity: u64,
    /// The tier's index.
    pub tier: usize,
}
