//! `AdaptiveLimitLayer`: `new()`, `builder()`, `handle()` and the `Layer` impl.

use std::fmt;
use std::sync::Arc;

use palisade_core::classify::DefaultClassifier;
use tower_layer::Layer;

use super::builder::AdaptiveLimitBuilder;
use super::config::AdaptiveLimitConfig;
use super::handle::AdaptiveLimitHandle;
use super::limiter::Limiter;
use super::partition::NoPartitions;
use super::service::AdaptiveLimit;

/// Applies an [`AdaptiveLimit`]: a concurrency limit that an algorithm ([`Vegas`](super::Vegas) by
/// default, [`Aimd`](super::Aimd), [`Gradient2`](super::Gradient2)) moves from the latency and
/// outcome of every call; calls over the limit are shed with
/// [`Overloaded`](palisade_core::rejection::Overloaded). See the [module docs](super).
///
/// # Clone
///
/// The limit, the in-flight counts and the backlog live in an `Arc` created when the layer is
/// built: every service this layer wraps, and every clone, share one limit. The
/// [`handle`](Self::handle) reads it.
pub struct AdaptiveLimitLayer<C = DefaultClassifier, Partition = NoPartitions> {
    limiter: Arc<Limiter>,
    classifier: C,
    partitioner: Arc<Partition>,
    names: Arc<[Arc<str>]>,
    shed_when_inner_not_ready: bool,
}

impl<C: Clone, Partition> Clone for AdaptiveLimitLayer<C, Partition> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            classifier: self.classifier.clone(),
            partitioner: self.partitioner.clone(),
            names: self.names.clone(),
            shed_when_inner_not_ready: self.shed_when_inner_not_ready,
        }
    }
}

impl<C: fmt::Debug, Partition> fmt::Debug for AdaptiveLimitLayer<C, Partition> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("limiter", &self.limiter)
            .field("classifier", &self.classifier)
            .field("partitions", &self.names)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimitLayer {
    /// An adaptive limit with every setting at its default ([`AdaptiveLimitConfig`]):
    /// [`Vegas`](super::Vegas) with concurrency-limits' defaults, the
    /// [`DefaultClassifier`] (`Err` is a drop), calls over the limit shed at once.
    ///
    /// ```
    /// use palisade_bulkhead::AdaptiveLimitLayer;
    ///
    /// let layer = AdaptiveLimitLayer::new();
    /// assert_eq!(layer.handle().limit(), 20); // Vegas' initial limit
    /// ```
    pub fn new() -> Self {
        Self::builder().assemble()
    }

    /// Starts building an adaptive limit.
    pub fn builder() -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder::from_config(AdaptiveLimitConfig::default())
    }
}

impl Default for AdaptiveLimitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, Partition> AdaptiveLimitLayer<C, Partition> {
    pub(crate) fn from_parts(
        limiter: Arc<Limiter>,
        classifier: C,
        partitioner: Arc<Partition>,
        names: Arc<[Arc<str>]>,
        shed_when_inner_not_ready: bool,
    ) -> Self {
        Self { limiter, classifier, partitioner, names, shed_when_inner_not_ready }
    }

    /// The handle: current limit, snapshot, events.
    pub fn handle(&self) -> AdaptiveLimitHandle {
        AdaptiveLimitHandle { limiter: self.limiter.clone() }
    }
}

impl<S, C: Clone, Partition> Layer<S> for AdaptiveLimitLayer<C, Partition> {
    type Service = AdaptiveLimit<S, C, Partition>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit::new(
            inner,
            self.limiter.clone(),
            self.classifier.clone(),
            self.partitioner.clone(),
            self.names.clone(),
            self.shed_when_inner_not_ready,
        )
    }
}
