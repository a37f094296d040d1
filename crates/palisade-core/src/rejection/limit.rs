//! Refusals for lack of room: rate limits, bulkheads, shed load, key sets, budgets.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Rejection, RejectionKind};

/// The rate limiter `name` refused the call; the next one may pass after `retry_after`.
#[derive(Clone, Debug)]
pub struct RateLimited {
    name: Arc<str>,
    retry_after: Duration,
}

impl RateLimited {
    /// A rejection by the limiter `name`; the next admission is `retry_after` away.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Duration) -> Self {
        Self { name: name.into(), retry_after }
    }

    /// Time until the limiter would admit this call.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit `{}` exceeded; retry after {:?}", self.name, self.retry_after)
    }
}

rejection_impl!(RateLimited, RateLimited, |s: &RateLimited| Some(s.retry_after));

/// Why a bulkhead refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BulkheadFullReason {
    /// Every permit was taken and waiting was not allowed (load shedding).
    NoPermit,
    /// Every permit was taken and the wait queue was full.
    QueueFull,
    /// The call waited for a permit as long as it was allowed to.
    WaitTimedOut,
}

/// The bulkhead `name` had no permit for the call.
#[derive(Clone, Debug)]
pub struct BulkheadFull {
    name: Arc<str>,
    reason: BulkheadFullReason,
    retry_after: Option<Duration>,
}

impl BulkheadFull {
    /// A rejection by the bulkhead `name` for `reason`.
    pub fn new(name: impl Into<Arc<str>>, reason: BulkheadFullReason) -> Self {
        Self { name: name.into(), reason, retry_after: None }
    }

    /// The same rejection with a suggested retry delay.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Why the call was refused.
    pub fn reason(&self) -> BulkheadFullReason {
        self.reason
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            BulkheadFullReason::NoPermit => "no permit free",
            BulkheadFullReason::QueueFull => "wait queue full",
            BulkheadFullReason::WaitTimedOut => "wait for a permit timed out",
        };
        write!(f, "bulkhead `{}` is full: {why}", self.name)
    }
}

rejection_impl!(BulkheadFull, BulkheadFull, |s: &BulkheadFull| s.retry_after);

/// The layer `name` shed the call to protect an overloaded service.
#[derive(Clone, Debug)]
pub struct Overloaded {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

impl Overloaded {
    /// A rejection by the layer `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), retry_after: None }
    }

    /// The same rejection with a suggested retry delay.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is overloaded; call shed", self.name)
    }
}

rejection_impl!(Overloaded, Overloaded, |s: &Overloaded| s.retry_after);

/// The keyed layer `name` refused a request for a new key: all of its `capacity` keys still
/// constrain someone (see [`keyed`](crate::keyed)), so none could be forgotten
/// to make room. Its kind is [`RejectionKind::Overloaded`] (HTTP 503).
#[derive(Clone, Debug)]
pub struct KeySetFull {
    name: Arc<str>,
    capacity: usize,
}

impl KeySetFull {
    /// A rejection by the layer `name`, whose key set holds `capacity` keys.
    pub fn new(name: impl Into<Arc<str>>, capacity: usize) -> Self {
        Self { name: name.into(), capacity }
    }

    /// The most keys the layer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for KeySetFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` holds {} keys, all in use; new key refused", self.name, self.capacity)
    }
}

rejection_impl!(KeySetFull, Overloaded, |_: &KeySetFull| None);

/// The limit `name` (tier `tier`) can never admit this request: its cost is above the
/// tier's whole capacity, so waiting would not help and retrying is pointless.
#[derive(Clone, Debug)]
pub struct CostExceedsCapacity {
    name: Arc<str>,
    tier: Arc<str>,
    cost: u32,
    capacity: u32,
}

impl CostExceedsCapacity {
    /// A refusal by the tier `tier` of the limit `name` of a request costing `cost`.
    pub fn new(name: impl Into<Arc<str>>, tier: impl Into<Arc<str>>, cost: u32, capacity: u32) -> Self {
        Self { name: name.into(), tier: tier.into(), cost, capacity }
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

rejection_impl!(CostExceedsCapacity, CostExceedsCapacity, |_: &CostExceedsCapacity| None);

/// The client-side throttle `name` refused to send the call (adaptive throttling).
#[derive(Clone, Debug)]
pub struct Throttled {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

impl Throttled {
    /// A rejection by the throttle `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), retry_after: None }
    }

    /// The same rejection with a suggested retry delay.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The throttle's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` throttled the call locally", self.name)
    }
}

rejection_impl!(Throttled, Throttled, |s: &Throttled| s.retry_after);

/// The retry or hedge budget `name` had nothing left for this attempt.
#[derive(Clone, Debug)]
pub struct BudgetExhausted {
    name: Arc<str>,
}

impl BudgetExhausted {
    /// A rejection by the budget `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry budget `{}` exhausted", self.name)
    }
}

rejection_impl!(BudgetExhausted, BudgetExhausted, |_: &BudgetExhausted| None);
