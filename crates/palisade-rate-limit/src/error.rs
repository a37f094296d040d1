//! Every error of the rate limit crate: [`Denied`], the answer of a direct
//! [`RateLimiter`](crate::RateLimiter) check, and the rejections a
//! [`RateLimitLayer`](crate::RateLimitLayer) answers with (palisade-core's types, so the
//! HTTP and gRPC mappings know them): [`RateLimited`] (429), [`CostExceedsCapacity`] (413),
//! [`KeySetFull`] (503), [`KeyMissing`] (a keyed limit got a request without a key) — and
//! [`ConfigError`], what `build()`, `validate` and `set_quota` return for a bad setting.
//!
//! # Example
//!
//! ```
//! use palisade_rate_limit::error::CostExceedsCapacity;
//! use palisade_rate_limit::{Quota, RateLimitLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(10).burst(5))
//!     .weight(|batch: &Vec<u8>| batch.len() as u32)
//!     .build()
//!     .unwrap();
//! let svc = layer.layer(service_fn(|b: Vec<u8>| async move { Ok::<_, std::convert::Infallible>(b.len()) }));
//! let err = svc.oneshot(vec![0; 6]).await.unwrap_err();
//! let too_big = err.downcast_ref::<CostExceedsCapacity>().unwrap();
//! assert_eq!((too_big.cost(), too_big.capacity()), (6, 5));
//! # }
//! ```

use std::fmt;
use std::time::Duration;

pub use palisade_core::config::ConfigError;
pub use palisade_core::rejection::{CostExceedsCapacity, KeyMissing, KeySetFull, RateLimited};

/// Why a limiter did not admit a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Denied {
    /// Not now; the same request would be admitted after this long (if nothing else takes
    /// the capacity first).
    RetryAfter(Duration),
    /// The request costs more than the limit can ever admit at once; waiting will not help.
    CostExceedsCapacity {
        /// The request's cost.
        cost: u32,
        /// The most the limit admits at once.
        capacity: u32,
    },
    /// A keyed limit holds as many keys as it may, and every one of them still constrains
    /// someone: a *new* key is refused rather than any key's state reset (see
    /// [`LocalStore`](crate::LocalStore)).
    KeySetFull {
        /// The most keys the limit holds.
        capacity: usize,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RetryAfter(d) => write!(f, "rate limited; retry after {d:?}"),
            Self::CostExceedsCapacity { cost, capacity } => {
                write!(f, "request cost {cost} exceeds the limit's capacity {capacity}")
            }
            Self::KeySetFull { capacity } => write!(f, "all {capacity} keys in use; new key refused"),
        }
    }
}

impl std::error::Error for Denied {}
