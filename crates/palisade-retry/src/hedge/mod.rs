//! Hedged requests: when an attempt is slow, send another and take the first good answer.
//!
//! [`HedgeLayer`] runs up to `max_attempts` attempts of one request **at the same time**, in
//! one of three modes (those of Polly v8's hedging strategy):
//!
//! - **delayed** (the default): a new attempt starts when the attempts in flight have not
//!   answered after a delay — fixed ([`HedgeLayerBuilder::delay`]) or the observed latency
//!   percentile of successful attempts ([`HedgeLayerBuilder::latency_percentile`], e.g.
//!   p95; the fixed delay is used until enough samples are seen);
//! - **parallel** ([`HedgeLayerBuilder::parallel`]): all attempts at once;
//! - **fallback** ([`HedgeLayerBuilder::fallback`]): the next attempt only after one fails
//!   (a retry without backoff).
//!
//! The first result that is not a retryable failure wins and is returned; the other attempts
//! are cancelled (their futures dropped) before it is returned. A **retryable** (non-fatal)
//! failure lets the others continue, as gRPC's hedging policy (gRFC A6) says of non-fatal
//! status codes, and starts the next attempt at once without waiting for the delay; a
//! **non-retryable** (fatal) one is returned at once. When every attempt has
//! failed the caller gets the last failure as the inner service gave it.
//!
//! Server pushback (gRFC A6, read by `GrpcClassifier`) is honoured on non-fatal failures:
//! a pushback of `n` ms starts the next attempt after `n` ms (instead of at once or after
//! the hedge delay; a later non-fatal failure without a pushback does not cut that wait
//! short), and a pushback saying "do not retry" starts no further attempt but
//! lets those in flight run on — only a fatal status (or a success) cancels them. An HTTP
//! `Retry-After` on a non-fatal failure does not delay hedges. Deliberate deviation from
//! grpc-java, which honours any pushback: one longer than
//! [`max_retry_after`](HedgeLayerBuilder::max_retry_after) (30 s by default) counts as "do
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
//! ratio budget's deposit reads the clock once per call (see
//! [`RetryBudget::deposit`](crate::RetryBudget::deposit)).

mod future;
mod latency;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::BoxError;
use tower_layer::Layer;
use tower_service::Service;

pub use self::future::HedgeFuture;
use self::latency::LatencyTracker;
use crate::budget::RetryBudget;
use crate::event::RetryEvent;
use crate::handle::{Counters, RetrySnapshot};
use crate::replay::{replay_fn, CloneRequest, Replay, ReplayFn};
use crate::tally::Tally;

/// The most attempts one hedged call may run (every one may be in flight at once, so the
/// bound is checked when the layer is built).
const MAX_HEDGED_ATTEMPTS: u32 = 100;

/// When a hedge layer starts the next attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum HedgeMode {
    /// After a fixed delay without an answer.
    Delay(Duration),
    /// After the observed latency percentile (`0.0..=1.0`) of successful attempts; the
    /// `fallback` delay until `min_samples` were seen.
    Percentile {
        /// The percentile, e.g. `0.95`.
        percentile: f64,
        /// The delay used until enough samples were seen.
        fallback: Duration,
        /// Samples needed before the percentile is used (at most 128).
        min_samples: u32,
    },
    /// All attempts at once.
    Parallel,
    /// The next attempt only after a retryable failure.
    Fallback,
}

pub(crate) struct HedgeCore {
    pub(crate) name: Arc<str>,
    pub(crate) max_attempts: u32,
    pub(crate) mode: HedgeMode,
    /// The longest server pushback honoured; a longer one stops new hedges.
    pub(crate) max_retry_after: Duration,
    pub(crate) latency: Option<LatencyTracker>,
    pub(crate) budget: RetryBudget,
    pub(crate) events: EventBus<RetryEvent>,
    pub(crate) counters: Counters,
}

impl HedgeCore {
    /// The delay before the next hedge in the delayed modes.
    pub(crate) fn hedge_delay(&self) -> Option<Duration> {
        match self.mode {
            HedgeMode::Delay(d) => Some(d),
            HedgeMode::Percentile { fallback, .. } => {
                Some(self.latency.as_ref().and_then(LatencyTracker::estimate).unwrap_or(fallback))
            }
            HedgeMode::Parallel | HedgeMode::Fallback => None,
        }
    }
}

impl fmt::Debug for HedgeCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("mode", &self.mode)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Hedges calls; see the [module docs](self).
pub struct HedgeLayer<C = DefaultClassifier, P = CloneRequest> {
    core: Arc<HedgeCore>,
    classifier: C,
    replay: P,
}

impl HedgeLayer {
    /// A builder: name `"hedge"`, 2 attempts, delayed mode with 100 ms, Finagle budget,
    /// [`DefaultClassifier`], [`CloneRequest`].
    pub fn builder() -> HedgeLayerBuilder {
        HedgeLayerBuilder {
            name: "hedge".into(),
            max_attempts: 2,
            mode: HedgeMode::Delay(Duration::from_millis(100)),
            max_retry_after: Duration::from_secs(30),
            budget: None,
            listeners: Vec::new(),
            classifier: DefaultClassifier,
            replay: CloneRequest,
        }
    }
}

impl<C, P> HedgeLayer<C, P> {
    /// A handle to the layer's counters, events and budget.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle { core: self.core.clone() }
    }
}

impl<C: Clone, P: Clone> Clone for HedgeLayer<C, P> {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), classifier: self.classifier.clone(), replay: self.replay.clone() }
    }
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for HedgeLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("config", &self.core)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for HedgeLayer<C, P> {
    type Service = Hedge<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            core: Tally::new(self.core.clone()),
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
        }
    }
}

/// Builds a [`HedgeLayer`].
#[must_use]
pub struct HedgeLayerBuilder<C = DefaultClassifier, P = CloneRequest> {
    name: Arc<str>,
    max_attempts: u32,
    mode: HedgeMode,
    max_retry_after: Duration,
    budget: Option<RetryBudget>,
    listeners: Vec<Listener<RetryEvent>>,
    classifier: C,
    replay: P,
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for HedgeLayerBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayerBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("mode", &self.mode)
            .field("budget", &self.budget)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl<C, P> HedgeLayerBuilder<C, P> {
    /// The name in events and metric labels (default `"hedge"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Attempts in all, in flight at once at most (1 to 100; default 2).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Delayed mode: a new attempt after `delay` without an answer. A zero delay is
    /// [parallel](Self::parallel) mode.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.mode = HedgeMode::Delay(delay);
        self
    }

    /// Delayed mode with the observed `percentile` (e.g. `0.95`) of successful attempts'
    /// latency over the last 128, once 16 were seen; the delay set before (or 100 ms) until
    /// then.
    pub fn latency_percentile(mut self, percentile: f64) -> Self {
        let fallback = match self.mode {
            HedgeMode::Delay(d) | HedgeMode::Percentile { fallback: d, .. } => d,
            _ => Duration::from_millis(100),
        };
        self.mode = HedgeMode::Percentile { percentile, fallback, min_samples: 16 };
        self
    }

    /// Parallel mode: all attempts at once.
    pub fn parallel(mut self) -> Self {
        self.mode = HedgeMode::Parallel;
        self
    }

    /// Fallback mode: the next attempt only after a retryable failure.
    pub fn fallback(mut self) -> Self {
        self.mode = HedgeMode::Fallback;
        self
    }

    /// Any [`HedgeMode`].
    pub fn mode(mut self, mode: HedgeMode) -> Self {
        self.mode = mode;
        self
    }

    /// The longest server pushback (gRPC `grpc-retry-pushback-ms`) honoured before the next
    /// hedge (default 30 s, as the retry layer's
    /// [`max_retry_after`](crate::RetryLayerBuilder::max_retry_after)). A longer pushback
    /// stops new hedges as "do not retry" does: the attempts in flight go on, and when none
    /// is left the call ends with the last failure ([`GiveUpReason::HintTooLong`]) instead of
    /// waiting for as long as the server asked — a hostile or broken server cannot hold a
    /// hedged call for days.
    ///
    /// [`GiveUpReason::HintTooLong`]: crate::GiveUpReason::HintTooLong
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The budget hedges draw from (default: a Finagle budget of its own).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Registers a listener for the layer's events.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&RetryEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The classifier: a retryable failure is non-fatal (the other attempts go on).
    pub fn classifier<C2>(self, classifier: C2) -> HedgeLayerBuilder<C2, P> {
        HedgeLayerBuilder {
            name: self.name,
            max_attempts: self.max_attempts,
            mode: self.mode,
            max_retry_after: self.max_retry_after,
            budget: self.budget,
            listeners: self.listeners,
            classifier,
            replay: self.replay,
        }
    }

    /// How requests are copied for further attempts (see [`replay`](crate::replay)).
    pub fn replay<P2>(self, replay: P2) -> HedgeLayerBuilder<C, P2> {
        HedgeLayerBuilder {
            name: self.name,
            max_attempts: self.max_attempts,
            mode: self.mode,
            max_retry_after: self.max_retry_after,
            budget: self.budget,
            listeners: self.listeners,
            classifier: self.classifier,
            replay,
        }
    }

    /// A "clone or give up" hook.
    pub fn replay_fn<F>(self, f: F) -> HedgeLayerBuilder<C, ReplayFn<F>> {
        self.replay(replay_fn(f))
    }

    /// Validates and builds.
    pub fn build(self) -> Result<HedgeLayer<C, P>, ConfigError> {
        ensure(
            (1..=MAX_HEDGED_ATTEMPTS).contains(&self.max_attempts),
            "max_attempts",
            "must be between 1 and 100",
        )?;
        let mut mode = self.mode;
        let latency = match mode {
            // A zero delay sends every attempt at once: parallel mode (no timer).
            HedgeMode::Delay(d) if d.is_zero() => {
                mode = HedgeMode::Parallel;
                None
            }
            HedgeMode::Percentile { percentile, min_samples, .. } => {
                palisade_core::config::ensure_ratio("latency_percentile", percentile)?;
                Some(LatencyTracker::new(percentile, u64::from(min_samples)))
            }
            HedgeMode::Delay(_) | HedgeMode::Parallel | HedgeMode::Fallback => None,
        };
        Ok(HedgeLayer {
            core: Arc::new(HedgeCore {
                max_attempts: self.max_attempts,
                mode,
                max_retry_after: self.max_retry_after,
                latency,
                budget: self.budget.unwrap_or_default(),
                events: EventBus::with_listeners("hedge", self.name.clone(), self.listeners),
                counters: Counters::new("hedge", &self.name),
                name: self.name,
            }),
            classifier: self.classifier,
            replay: self.replay,
        })
    }
}

/// Reads a hedge layer's counters and subscribes to its events.
///
/// # Clone
///
/// Clones share the layer's state.
#[derive(Clone, Debug)]
pub struct HedgeHandle {
    core: Arc<HedgeCore>,
}

impl HedgeHandle {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> RetrySnapshot {
        self.core.counters.snapshot()
    }

    /// The layer's budget.
    pub fn budget(&self) -> &RetryBudget {
        &self.core.budget
    }

    /// The delay before the next hedge now (delayed modes), e.g. the observed percentile.
    pub fn current_delay(&self) -> Option<Duration> {
        self.core.hedge_delay()
    }

    /// Registers a listener for the layer's events.
    pub fn subscribe<F>(&self, listener: F)
    where
        F: Fn(&RetryEvent) + Send + Sync + 'static,
    {
        self.core.events.subscribe(listener);
    }
}

/// The service made by [`HedgeLayer`].
///
/// # Clone
///
/// Clones share the layer's state and hold no reservation.
pub struct Hedge<S, C = DefaultClassifier, P = CloneRequest> {
    inner: S,
    core: Tally<HedgeCore>,
    classifier: C,
    replay: P,
}

impl<S, C, P> Hedge<S, C, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the hedge service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone, P: Clone> Clone for Hedge<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, P: fmt::Debug> fmt::Debug for Hedge<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("config", &self.core)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, Req, C, P> Service<Req> for Hedge<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    P: Replay<Req> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = HedgeFuture<S, Req, C, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let exact = self.core.count();
        let spare = self.inner.clone();
        HedgeFuture::start(
            &mut self.inner,
            spare,
            req,
            self.core.core().clone(),
            self.classifier.clone(),
            self.replay.clone(),
            exact,
        )
    }
}
