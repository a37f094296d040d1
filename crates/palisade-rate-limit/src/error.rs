//! Errors of the rate limit layer besides [`RateLimited`](palisade_core::rejection::RateLimited).
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
use std::sync::Arc;

/// A request weighs more than a limit can ever admit at once (its burst, queue or window).
///
/// Waiting would never help, so the layer refuses it at once in either mode. It is not a
/// [`Rejection`](palisade_core::Rejection): it means the request (or the weigher) is wrong,
/// not that the client is too fast.
#[derive(Clone, Debug)]
pub struct CostExceedsCapacity {
    name: Arc<str>,
    tier: Arc<str>,
    cost: u32,
    capacity: u32,
}

impl CostExceedsCapacity {
    pub(crate) fn new(name: Arc<str>, tier: Arc<str>, cost: u32, capacity: u32) -> Self {
        Self { name, tier, cost, capacity }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tier that cannot admit the request.
    pub fn tier(&self) -> &str {
        &self.tier
    }

    /// The request's cost.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The most the tier admits at once.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
}

impl fmt::Display for CostExceedsCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit `{}` (tier `{}`) can never admit a request of cost {}: its capacity is {}",
            self.name, self.tier, self.cost, self.capacity
        )
    }
}

impl std::error::Error for CostExceedsCapacity {}
