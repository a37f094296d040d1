//! `RetryLayer` (and the layer type it shares with hedging).

use std::fmt;
use std::sync::Arc;

use palisade_core::classify::DefaultClassifier;
use tower_layer::Layer;

use crate::budget::RetryBudget;
use crate::builder::RetryBuilder;
use crate::engine::{AttemptCore, RetryStrategy, Strategy};
use crate::handle::AttemptHandle;
use crate::replay::CloneRequest;
use crate::service::AttemptService;

/// Retries failed calls with backoff, jitter, a budget, server hints and deadlines.
///
/// [`RetryLayer::new(max_attempts)`](AttemptLayer::new) takes the defaults for the rest;
/// [`RetryLayer::builder`](AttemptLayer::builder) sets any option (see
/// [`RetryConfig`](crate::RetryConfig)). See the [crate docs](crate) for the behaviour.
///
/// ```
/// use palisade_retry::RetryLayer;
///
/// let retry = RetryLayer::new(3); // 3 attempts, exponential backoff with full jitter
/// assert_eq!(retry.handle().name(), "retry");
/// ```
pub type RetryLayer<C = DefaultClassifier, Replay = CloneRequest> = AttemptLayer<C, Replay, RetryStrategy>;

/// The layer of the attempt engine: [`RetryLayer`] or
/// [`HedgeLayer`](crate::hedge::HedgeLayer), by its [`Strategy`].
///
/// # Clone
///
/// The layer holds its shared state (budget, throttle, counters, listeners, jitter RNG,
/// latency samples) in an `Arc` created by `build()`: every service it makes, and every
/// clone of those, share it. Build two layers to get two independent states; pass the same
/// [`RetryBudget`](crate::budget::RetryBudget) to both to share only the budget.
pub struct AttemptLayer<C, Replay, St> {
    core: Arc<AttemptCore<St>>,
    classifier: C,
    replay: Replay,
}

impl RetryLayer {
    /// A retry layer making at most `max_attempts` attempts (the first included) with every
    /// other option at its default ([`RetryConfig`](crate::RetryConfig)). `0` means the
    /// same as `1`: the call is sent once, never retried.
    pub fn new(max_attempts: u32) -> Self {
        // Every other option at its (valid) default, the default budget being Finagle's.
        RetryBuilder::default().max_attempts(max_attempts.max(1)).assemble(RetryBudget::finagle_default())
    }

    /// A builder with the defaults of [`RetryConfig`](crate::RetryConfig).
    pub fn builder() -> RetryBuilder {
        RetryBuilder::default()
    }
}

impl<C, Replay, St> AttemptLayer<C, Replay, St> {
    pub(crate) fn from_parts(core: Arc<AttemptCore<St>>, classifier: C, replay: Replay) -> Self {
        Self { core, classifier, replay }
    }

    /// A handle to the layer's counters, events and budget.
    pub fn handle(&self) -> AttemptHandle<St> {
        AttemptHandle { core: self.core.clone() }
    }
}

impl<C: Clone, Replay: Clone, St> Clone for AttemptLayer<C, Replay, St> {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), classifier: self.classifier.clone(), replay: self.replay.clone() }
    }
}

impl<C: fmt::Debug, Replay: fmt::Debug, St: Strategy> fmt::Debug for AttemptLayer<C, Replay, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if St::PATTERN == "hedge" { "HedgeLayer" } else { "RetryLayer" };
        f.debug_struct(name)
            .field("config", &self.core)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, C: Clone, Replay: Clone, St> Layer<S> for AttemptLayer<C, Replay, St> {
    type Service = AttemptService<S, C, Replay, St>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptService::new(inner, self.core.clone(), self.classifier.clone(), self.replay.clone())
    }
}
