//! Hedged requests: when an attempt is slow, send another and take the first good answer.
//!
//! [`HedgeLayer`] runs up to `max_attempts` attempts of one request **at the same time**, in
//! one of three modes (those of Polly v8's hedging strategy):
//!
//! - **delayed** (the default): a new attempt starts when the attempts in flight have not
//!   answered after a delay — fixed ([`HedgeBuilder::delay`]) or the observed latency
//!   percentile of successful attempts ([`HedgeBuilder::latency_percentile`], e.g.
//!   p95; the fixed delay is used until enough samples are seen);
//! - **parallel** ([`HedgeBuilder::parallel`]): all attempts at once;
//! - **fallback** ([`HedgeBuilder::fallback`]): the next attempt only after one fails
//!   (a retry without backoff).
//!
//! The first result that is not a retryable failure wins and is returned; the other attempts
//! are cancelled (their futures dropped) before it is returned. A **retryable** (non-fatal)
//! failure lets the others continue, as gRPC's hedging policy (gRFC A6) says of non-fatal
//! status codes, and starts the next attempt at once without waiting for the delay; a
//! **non-retryable** (fatal) one is returned at once. When every attempt has
//! failed the caller gets the last failure as the inner service gave it.
//!
//! An attempt **refused locally** — a palisade rejection from a layer between the hedge
//! and the backend (an open breaker, a full bulkhead, a rate limit, shed load; not a
//! timeout, which ends an attempt that was sent) — was never sent, so it says nothing
//! about the attempts in flight: they go on, whatever the classifier calls the refusal,
//! and no further attempt is started (it would meet the same refusal). A refused first
//! attempt is thus answered at once.
//!
//! Server pushback (gRFC A6, read by `GrpcClassifier`) is honoured on non-fatal failures:
//! a pushback of `n` ms starts the next attempt after `n` ms (instead of at once or after
//! the hedge delay; a later non-fatal failure without a pushback does not cut that wait
//! short), and a pushback saying "do not retry" starts no further attempt but
//! lets those in flight run on — only a fatal status (or a success) cancels them. An HTTP
//! `Retry-After` on a non-fatal failure does not delay hedges. Deliberate deviation from
//! grpc-java, which honours any pushback: one longer than
//! [`max_retry_after`](HedgeConfig::max_retry_after) (30 s by default) counts as "do
//! not retry", so that a server cannot hold a hedged call for days.
//!
//! Every hedge beyond the first attempt is paid for from a
//! [`RetryBudget`] (default: Finagle's, ratio 20 %), so hedging
//! adds at most a bounded fraction of load; when it is spent, no more hedges start and
//! [`RetryEvent::BudgetExhausted`](crate::RetryEvent) is published.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use palisade_retry::hedge::HedgeLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let layer = HedgeLayer::builder().max_attempts(2).delay(Duration::from_millis(20)).build()?;
//! let handle = layer.handle();
//! let calls = Arc::new(AtomicU32::new(0));
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(move |_req: ()| {
//!     let n = calls.fetch_add(1, Ordering::Relaxed);
//!     async move {
//!         // The first attempt is stuck; the hedge answers in 5 ms.
//!         let ms = if n == 0 { 10_000 } else { 5 };
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, std::convert::Infallible>(n)
//!     }
//! }));
//! assert_eq!(svc.oneshot(()).await?, 1);
//! assert_eq!(handle.snapshot().hedges, 1);
//! # Ok(()) }
//! ```
//!
//! # Clone
//!
//! The layer's state (budget, latency samples, counters, listeners) is in an `Arc` shared by
//! every service it makes and their clones. Like [`Retry`](crate::Retry), the hedge service
//! keeps a clone of the inner service per call, polls its readiness before each hedge, and
//! holds no reservation of its own.
//!
//! # Cost
//!
//! The first attempt is stored inline; each further attempt is boxed (one allocation per
//! hedge, none when no hedge starts). A call answered before its hedge delay registers no
//! timer; the hedge delay is measured from the first time the call is pending. The default
//! ratio budget's deposit reads no clock on most calls (see
//! [`RetryBudget::deposit`](crate::RetryBudget::deposit)).
//!
//! # One engine with retry
//!
//! [`HedgeLayer`], [`Hedge`] and [`HedgeHandle`] are the retry layer's types with the
//! [`HedgeStrategy`]: the same layer, service, handle,
//! budget, counters and events ([`RetryEvent`](crate::RetryEvent),
//! [`RetrySnapshot`](crate::RetrySnapshot)); only the response future differs.

mod builder;
mod config;
mod future;
mod latency;

use std::time::Duration;

use palisade_core::classify::DefaultClassifier;

pub use self::builder::HedgeBuilder;
pub use self::config::HedgeConfig;
pub use self::future::HedgeFuture;
pub(crate) use self::latency::LatencyTracker;
use crate::budget::RetryBudget;
use crate::engine::HedgeStrategy;
pub use crate::handle::HedgeHandle;
use crate::layer::AttemptLayer;
use crate::replay::CloneRequest;
use crate::service::AttemptService;

/// When a hedge layer starts the next attempt.
///
/// In a config file (feature `serde`): `{"delay": "100ms"}`, `"parallel"`, `"fallback"` or
/// `{"percentile": {"percentile": 0.95, "fallback": "100ms", "min_samples": 16}}`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case", deny_unknown_fields))]
#[non_exhaustive]
pub enum HedgeMode {
    /// After a fixed delay without an answer. A zero delay is [`Parallel`](Self::Parallel).
    Delay(#[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))] Duration),
    /// After the observed latency percentile (`0.0..=1.0`) of successful attempts; the
    /// `fallback` delay until `min_samples` were seen.
    Percentile {
        /// The percentile, e.g. `0.95`.
        percentile: f64,
        /// The delay used until enough samples were seen.
        #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
        fallback: Duration,
        /// Samples needed before the percentile is used (at most 128).
        min_samples: u32,
    },
    /// All attempts at once.
    Parallel,
    /// The next attempt only after a retryable failure.
    Fallback,
}

/// Hedges calls; see the [module docs](self).
///
/// [`HedgeLayer::new(delay)`](AttemptLayer::new) sends a second attempt after `delay`
/// without an answer; [`HedgeLayer::builder`](AttemptLayer::builder) sets any option (see
/// [`HedgeConfig`]).
///
/// ```
/// use std::time::Duration;
/// use palisade_retry::hedge::HedgeLayer;
///
/// let hedge = HedgeLayer::new(Duration::from_millis(50));
/// assert_eq!(hedge.handle().current_delay(), Some(Duration::from_millis(50)));
/// ```
pub type HedgeLayer<C = DefaultClassifier, Replay = CloneRequest> = AttemptLayer<C, Replay, HedgeStrategy>;

/// The service made by [`HedgeLayer`].
pub type Hedge<S, C = DefaultClassifier, Replay = CloneRequest> = AttemptService<S, C, Replay, HedgeStrategy>;

impl HedgeLayer {
    /// Two attempts: a hedge after `delay` without an answer, every other option at its
    /// default ([`HedgeConfig`]). A zero delay sends both at once (parallel mode).
    pub fn new(delay: Duration) -> Self {
        HedgeBuilder::default().delay(delay).assemble(RetryBudget::finagle_default())
    }

    /// A builder with the defaults of [`HedgeConfig`].
    pub fn builder() -> HedgeBuilder {
        HedgeBuilder::default()
    }
}
