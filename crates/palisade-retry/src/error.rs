//! The errors retry, hedge and timeout layers add.
//!
//! They are palisade's shared rejections, re-exported here; each travels as a
//! [`BoxError`] and is found with `err.is::<T>()` or
//! [`find_rejection`](palisade_core::rejection::find_rejection):
//!
//! - [`TimedOut`]: the total deadline passed, the last attempt ran past the per-attempt
//!   timeout, or a `TimeoutLayer` (palisade-timeout) fired (→ HTTP 504 / gRPC
//!   DEADLINE_EXCEEDED through `palisade_core::respond`);
//! - [`Throttled`]: the adaptive throttle refused the first attempt locally (→ 429 /
//!   RESOURCE_EXHAUSTED);
//! - [`RetriesExhausted`] (opt-in, `.retries_exhausted_error(true)`): retries ran out; it
//!   wraps the last error.
//!
//! A spent retry budget is not an error of its own: the caller gets the last attempt's
//! error or response, and the event [`RetryEvent::BudgetExhausted`](crate::RetryEvent) and
//! the snapshot's `budget_exhausted` counter say why it was not retried. The same holds for
//! a throttle refusing a retry.

pub use palisade_core::rejection::{BudgetExhausted, Throttled, TimedOut};

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use palisade_core::BoxError;

use crate::event::GiveUpReason;

/// The layer ran out of retries: the opt-in final error of
/// [`retries_exhausted_error`](crate::RetryConfig::retries_exhausted_error).
///
/// It carries the attempt count, why no further attempt was made, and the last attempt's
/// error as its [`source`](Error::source), so palisade's
/// [`find_rejection`](palisade_core::rejection::find_rejection) and `find::<T>` still see a
/// rejection or an inner error type behind it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use palisade_retry::error::RetriesExhausted;
/// use palisade_retry::{GiveUpReason, RetryBudget, RetryLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let layer = RetryLayer::builder()
///     .max_attempts(3)
///     .budget(RetryBudget::unlimited())
///     .retries_exhausted_error(true)
///     .build()
///     .unwrap();
/// let svc = layer.layer(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("reset")) }));
/// let err = svc.oneshot(()).await.unwrap_err();
/// let exhausted = err.downcast_ref::<RetriesExhausted>().unwrap();
/// assert_eq!(exhausted.attempts(), 3);
/// assert_eq!(exhausted.reason(), GiveUpReason::AttemptsExhausted);
/// assert_eq!(exhausted.last_error().to_string(), "reset");
/// # }
/// ```
#[derive(Debug)]
pub struct RetriesExhausted {
    name: Arc<str>,
    attempts: u32,
    reason: GiveUpReason,
    source: BoxError,
}

impl RetriesExhausted {
    pub(crate) fn new(name: Arc<str>, attempts: u32, reason: GiveUpReason, source: BoxError) -> Self {
        Self { name, attempts, reason, source }
    }

    /// The name of the retry layer.
    pub fn layer_name(&self) -> &str {
        &self.name
    }

    /// Attempts made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why no further attempt was made.
    pub fn reason(&self) -> GiveUpReason {
        self.reason
    }

    /// The last attempt's error.
    pub fn last_error(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.source.as_ref()
    }

    /// The last attempt's error, owned.
    pub fn into_last_error(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for RetriesExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: gave up after {} attempt(s) ({}): {}",
            self.name,
            self.attempts,
            self.reason.as_str(),
            self.source
        )
    }
}

impl Error for RetriesExhausted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}
