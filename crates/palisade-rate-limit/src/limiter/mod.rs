//! [`RateLimiter`] (one limit, [`direct`]) and [`KeyedRateLimiter`] (one limit per key,
//! [`keyed`]), usable on their own or as the tiers of a [`RateLimitLayer`](crate::RateLimitLayer).

use std::time::Duration;

use tokio::time::Instant;

mod direct;
mod keyed;

pub(crate) use direct::ready_after;
pub use direct::{RateLimiter, RateLimiterBuilder};
pub use keyed::{KeyedRateLimiter, KeyedRateLimiterBuilder};

/// `at + d`, saturating at about thirty years ahead instead of overflowing.
pub(crate) fn add(at: Instant, d: Duration) -> Instant {
    palisade_core::time::deadline_after(at, d)
}

pub(crate) fn wait_nanos(max_wait: Option<Duration>) -> Option<u64> {
    max_wait.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
