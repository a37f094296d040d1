//! [`RateLimitEvent`]: what the rate limit layer publishes.
//!
//! # Example
//!
//! ```
//! use palisade_rate_limit::{Quota, RateLimitEvent, RateLimitLayer};
//!
//! let layer = RateLimitLayer::<String>::builder()
//!     .quota(Quota::per_second(10))
//!     .on_event(|e| {
//!         if let RateLimitEvent::Rejected { tier, retry_after } = e {
//!             tracing::debug!(%tier, ?retry_after, "refused");
//!         }
//!     })
//!     .build()
//!     .unwrap();
//! layer.handle().on_event(|e| tracing::debug!(event = ?e));
//! ```

use std::sync::Arc;
use std::time::Duration;

use palisade_core::event::{Event, FieldValue};

/// An event of a [`RateLimitLayer`](crate::RateLimitLayer); subscribe with the builder's
/// `on_event` or the handle's [`on_event`](crate::RateLimitHandle::on_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitEvent {
    /// A request was refused by `tier`; `retry_after` is `None` when its cost exceeds the
    /// tier's capacity.
    Rejected {
        /// The refusing tier.
        tier: Arc<str>,
        /// When the same request would be admitted.
        retry_after: Option<Duration>,
    },
    /// A request waits `delay` for its admission (wait mode, leaky bucket).
    Delayed {
        /// How long it waits.
        delay: Duration,
    },
    /// `keys` keys were evicted from `tier`'s store to stay within its bound.
    Evicted {
        /// The keyed tier.
        tier: Arc<str>,
        /// Keys evicted.
        keys: u64,
    },
}

impl Event for RateLimitEvent {
    /// `tier`, `retry_after_ms` (rejected, when known), `delay_ms` (delayed), `count` (keys
    /// evicted).
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::Rejected { tier, retry_after } => {
                record("tier", tier.into());
                if let Some(after) = retry_after {
                    record("retry_after_ms", (*after).into());
                }
            }
            Self::Delayed { delay } => record("delay_ms", (*delay).into()),
            Self::Evicted { tier, keys } => {
                record("tier", tier.into());
                record("count", (*keys).into());
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::Delayed { .. } => "delayed",
            Self::Evicted { .. } => "evicted",
        }
    }
}
