//! Rejections: the typed errors palisade layers return when *they* refuse a call.
//!
//! Each way to refuse is its own small type ([`CircuitOpen`], [`RateLimited`],
//! [`BulkheadFull`], [`Overloaded`], [`TimedOut`], [`Throttled`], [`BudgetExhausted`],
//! [`Closed`], [`CostExceedsCapacity`], [`KeySetFull`], [`KeyMissing`]). They travel as [`tower::BoxError`](crate::BoxError) like every other error in a
//! tower stack; [`find_rejection`] finds one inside any error, through source chains, and
//! [`find`] looks for one concrete type.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::rejection::{find_rejection, RateLimited, RejectionKind};
//! use palisade_core::BoxError;
//!
//! let err: BoxError = RateLimited::new("api", Duration::from_secs(2)).into();
//! let rejection = find_rejection(err.as_ref()).expect("a palisade rejection");
//! assert_eq!(rejection.kind(), RejectionKind::RateLimited);
//! assert_eq!(rejection.retry_after(), Some(Duration::from_secs(2)));
//! assert_eq!(rejection.layer_name(), "api");
//! assert!(err.is::<RateLimited>());
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Which way a palisade layer refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open (or half-open with no trial slot free).
    CircuitOpen,
    /// A rate limit refused the call.
    RateLimited,
    /// A bulkhead had no permit and its queue was full or the wait ran out.
    BulkheadFull,
    /// Load was shed: an adaptive limit, a full pool queue.
    Overloaded,
    /// A deadline passed.
    TimedOut,
    /// A client throttled itself (adaptive throttling) before sending.
    Throttled,
    /// A retry or hedge budget had nothing left.
    BudgetExhausted,
    /// The service or pool was shut down.
    Closed,
    /// The request can never be admitted: its cost is above the limit's whole capacity.
    CostExceedsCapacity,
    /// A keyed layer got a request its key function gave no key for, and its
    /// `when_unkeyed` is [`Unkeyed::Reject`](crate::keyed::Unkeyed::Reject): a deployment
    /// mistake (HTTP 500), not load.
    KeyMissing,
}

impl RejectionKind {
    /// A short stable name (`"circuit_open"`, `"rate_limited"`, …) for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::RateLimited => "rate_limited",
            Self::BulkheadFull => "bulkhead_full",
            Self::Overloaded => "overloaded",
            Self::TimedOut => "timed_out",
            Self::Throttled => "throttled",
            Self::BudgetExhausted => "budget_exhausted",
            Self::Closed => "closed",
            Self::CostExceedsCapacity => "cost_exceeds_capacity",
            Self::KeyMissing => "key_missing",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every palisade rejection says about itself.
pub trait Rejection: Error + Send + Sync + 'static {
    /// Which way the call was refused.
    fn kind(&self) -> RejectionKind;
    /// How long the caller should wait before trying again, when the layer knows.
    fn retry_after(&self) -> Option<Duration>;
    /// The name of the layer that refused (set with the layer builder's `name`).
    fn layer_name(&self) -> &str;
}

/// Finds a palisade rejection in `err` or anywhere in its source chain.
pub fn find_rejection<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a dyn Rejection> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = as_rejection(e) {
            return Some(r);
        }
        current = e.source();
    }
    None
}

/// Finds an error of type `T` in `err` or anywhere in its source chain.
///
/// ```
/// use palisade_core::rejection::{find, TimedOut};
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Wrapper(TimedOut);
/// impl std::fmt::Display for Wrapper {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("wrapped") }
/// }
/// impl std::error::Error for Wrapper {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.0) }
/// }
///
/// let err = Wrapper(TimedOut::new("db", Duration::from_secs(1)));
/// assert_eq!(find::<TimedOut>(&err).map(TimedOut::after), Some(Duration::from_secs(1)));
/// ```
pub fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        current = e.source();
    }
    None
}

macro_rules! rejections {
    ($($ty:ident),* $(,)?) => {
        fn as_rejection<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a dyn Rejection> {
            $(
                if let Some(r) = e.downcast_ref::<$ty>() {
                    return Some(r);
                }
            )*
            None
        }
    };
}

rejections!(
    CircuitOpen,
    RateLimited,
    BulkheadFull,
    Overloaded,
    TimedOut,
    Throttled,
    BudgetExhausted,
    Closed,
    CostExceedsCapacity,
    KeySetFull,
    KeyMissing
);

macro_rules! rejection_impl {
    ($ty:ident, $kind:ident, $retry:expr) => {
        impl Error for $ty {}

        impl Rejection for $ty {
            fn kind(&self) -> RejectionKind {
                RejectionKind::$kind
            }

            fn retry_after(&self) -> Option<Duration> {
                #[allow(clippy::redundant_closure_call)]
                ($retry)(self)
            }

            fn layer_name(&self) -> &str {
                &self.name
            }
        }
    };
}

mod limit;
mod state;

pub use limit::{
    BudgetExhausted, BulkheadFull, BulkheadFullReason, CostExceedsCapacity, KeySetFull, Overloaded,
    RateLimited, Throttled,
};
pub use state::{CircuitOpen, Closed, KeyMissing, TimedOut};
