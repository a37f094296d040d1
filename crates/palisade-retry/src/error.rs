//! The errors retry, hedge and timeout layers add.
//!
//! They are palisade's shared rejections, re-exported here; each travels as a
//! [`BoxError`](palisade_core::BoxError) and is found with `err.is::<T>()` or
//! [`find_rejection`](palisade_core::rejection::find_rejection):
//!
//! - [`TimedOut`]: the total deadline passed, the last attempt ran past the per-attempt
//!   timeout, or a [`TimeoutLayer`](crate::timeout::TimeoutLayer) fired (→ HTTP 504 / gRPC
//!   DEADLINE_EXCEEDED through `palisade_core::respond`);
//! - [`Throttled`]: the adaptive throttle refused the first attempt locally (→ 429 /
//!   RESOURCE_EXHAUSTED).
//!
//! A spent retry budget is not an error of its own: the caller gets the last attempt's
//! error or response, and the event [`RetryEvent::BudgetExhausted`](crate::RetryEvent) and
//! the snapshot's `budget_exhausted` counter say why it was not retried. The same holds for
//! a throttle refusing a retry.

pub use palisade_core::rejection::{BudgetExhausted, Throttled, TimedOut};
