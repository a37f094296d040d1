//! palisade-redis: fleet-wide limits over a Redis the fleet shares.
//!
//! Five pods each with a local rate limit admit five times the quota; a partner that allows
//! 100 concurrent calls receives 500. This crate keeps the limit's state in Redis:
//!
//! - [`RedisRateLimiter`]: distributed GCRA, keyed, weighted, multi-tier with no double
//!   spending, exact `retry_after`; one atomic Lua script per decision (`EVALSHA`, loaded on
//!   `NOSCRIPT`), time from Redis' `TIME`, every key with a TTL. Optional local batching with
//!   a documented overshoot bound.
//! - [`RedisBulkheadLayer`]: at most N calls in flight across the fleet; each permit is a lease
//!   renewed while the call runs and released when the response future is dropped, so the
//!   permits of a crashed instance come back after the lease.
//! - [`RedisCircuitBreakerLayer`]: per-time-bucket outcome counts aggregated in Redis; an
//!   open breaker is a Redis key every instance polls, so the fleet opens together.
//! - [`OnRedisDown`]: what to decide when Redis is slow or down. Every Redis call has a
//!   timeout and goes through palisade's own circuit breaker ([`RedisBackend`]); the
//!   connection reconnects by itself.
//!
//! The client is redis-rs (`redis` crate, `ConnectionManager`): one multiplexed, pipelined
//! connection per backend that reconnects with backoff; BSD-3-Clause.
//!
//! Minimum supported Rust version: **1.88** for this crate (the `redis` client's own minimum
//! since redis-rs 1.3), while the rest of palisade keeps 1.85.
//!
//! Names follow palisade's one shape (CONTRIBUTING): `RedisXLayer` / `RedisX<S>` /
//! `RedisXBuilder` for each fleet-wide layer, errors in [`error`], listeners with
//! [`RedisBackend::on_event`], counters from [`RedisBackend::snapshot`]. The builders take the
//! backend (a live connection, which no settings file holds), so there is no `XConfig` here.
//!
//! Tests and benches start a throwaway server with [`server::RedisServer`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod breaker;
mod bulkhead;
pub mod error;
mod gcra;
pub mod server;
mod service;
mod store;

pub use backend::{RedisBackend, RedisBackendBuilder, RedisBackendSnapshot, RedisEvent};
pub use breaker::{
    RedisCircuitBreaker, RedisCircuitBreakerBuilder, RedisCircuitBreakerLayer, RedisCircuitState,
};
pub use bulkhead::{RedisBulkhead, RedisBulkheadBuilder, RedisBulkheadLayer, MAX_CONCURRENT};
pub use error::{BackendError, BulkheadFull, CircuitOpen, CostExceedsCapacity, RateLimited};
/// The GCRA Lua script (for benches comparing it sent raw; see [`RedisRateLimiter`]).
pub const GCRA_SCRIPT: &str = gcra::GCRA_LUA;
pub use gcra::{Decision, Quota, RedisRateLimiter, RedisRateLimiterBuilder, Source};

/// What a fleet-wide limit decides while Redis is slow or down (a call timed out, failed, or
/// palisade's breaker around the connection is open).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OnRedisDown {
    /// Admit every call: availability over the limit.
    FailOpen,
    /// Refuse every call: the limit over availability. The default.
    FailClosed,
    /// Decide with an in-process limit holding `share` (0–1) of the quota (e.g. `1 / instances`).
    /// For the bulkhead: `share × N` local permits.
    Local {
        /// The share of the quota this instance may use alone.
        share: f64,
    },
}
