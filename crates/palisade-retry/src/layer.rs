use std::fmt;
use std::sync::Arc;

use palisade_core::classify::DefaultClassifier;
use tower_layer::Layer;

use crate::config::RetryLayerBuilder;
use crate::handle::{Core, RetryHandle};
use crate::replay::CloneRequest;
use crate::Retry;

/// Retries failed calls with backoff, jitter, a budget, server hints and deadlines.
///
/// Build it with [`RetryLayer::builder`]; see the [crate docs](crate) for the behaviour.
///
/// # Clone
///
/// The layer holds its shared state (budget, throttle, counters, listeners, jitter RNG) in
/// an `Arc` created by [`build`](RetryLayerBuilder::build): every service it makes, and
/// every clone of those, share it. Build two layers to get two independent states; pass the
/// same [`RetryBudget`](crate::budget::RetryBudget) to both to share only the budget.
pub struct RetryLayer<C = DefaultClassifier, P = CloneRequest> {
    core: Arc<Core>,
    classifier: C,
    replay: P,
}

impl RetryLayer {
    /// A builder with the defaults listed on [`RetryLayerBuilder`].
    pub fn builder() -> RetryLayerBuilder {
        RetryLayerBuilder::default()
    }
}

impl<C, P> RetryLayer<C, P> {
    pub(crate) fn from_parts(core: Arc<Core>, classifier: C, replay: P) -> Self {
        Self { core, classifier, replay }
    }

    /// A handle to the layer's counters, events and budget.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle { core: self.core.clone() }
    }
}

impl<C: Clone, P: Clone> Clone for RetryLayer<C, P> {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), classifier: self.classifier.clone(), replay: self.replay.clone() }
    }
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for RetryLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.core)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for RetryLayer<C, P> {
    type Service = Retry<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.core.clone(), self.classifier.clone(), self.replay.clone())
    }
}
