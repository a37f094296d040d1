//! Errors of the rate limit layer besides [`RateLimited`](palisade_core::rejection::RateLimited).

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
