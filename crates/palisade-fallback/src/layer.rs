//! [`FallbackLayer`] and the state it shares with its services.

use std::fmt;
use std::sync::Arc;

use palisade_core::rejection::find_rejection;
use palisade_core::{BoxError, Classify, DefaultClassifier};
use tower_layer::Layer;

use crate::config::{FallbackBuilder, TriggerOn};
use crate::event::FallbackReason;
use crate::handle::{FallbackHandle, Stats};
use crate::service::Fallback;

/// What a layer and every service and clone it built share.
pub(crate) struct Shared<P, C> {
    pub(crate) provider: P,
    pub(crate) classifier: C,
    pub(crate) trigger_on: TriggerOn,
    pub(crate) stats: Arc<Stats>,
}

impl<P, C> Shared<P, C> {
    /// Whether `result` (an inner answer) starts the fallback, and why.
    #[inline]
    pub(crate) fn reason<Res>(&self, result: &Result<Res, BoxError>) -> Option<FallbackReason>
    where
        C: Classify<Res, BoxError>,
    {
        match result {
            Ok(_) => (self.trigger_on.failures() && self.classifier.classify(result).is_failure())
                .then_some(FallbackReason::FailedResponse),
            Err(e) => match find_rejection(e.as_ref()) {
                Some(r) => self.trigger_on.rejections().then(|| FallbackReason::Rejection(r.kind())),
                None => (self.trigger_on.failures() && self.classifier.classify(result).is_failure())
                    .then_some(FallbackReason::Error),
            },
        }
    }
}

/// Answers from a fallback when the inner service fails or a palisade layer refuses the call.
///
/// Built with [`FallbackLayer::builder`]; see the [crate docs](crate) for an example.
///
/// # Clone
///
/// The layer keeps the provider, the classifier and the counters in an `Arc`: every service it
/// builds, and every clone of those, shares them and reports to the same
/// [`FallbackHandle`].
pub struct FallbackLayer<P, C = DefaultClassifier> {
    shared: Arc<Shared<P, C>>,
}

impl<P, C> Clone for FallbackLayer<P, C> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<P, C> fmt::Debug for FallbackLayer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.shared.stats.name)
            .field("trigger_on", &self.shared.trigger_on)
            .finish_non_exhaustive()
    }
}

impl FallbackLayer<(), ()> {
    /// A builder; see [`FallbackBuilder`].
    pub fn builder() -> FallbackBuilder {
        FallbackBuilder::new()
    }
}

impl<P, C> FallbackLayer<P, C> {
    pub(crate) fn from_shared(shared: Arc<Shared<P, C>>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<P, C>> {
        &self.shared
    }

    /// A handle on the counters and events of this layer and every service it builds.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle { stats: self.shared.stats.clone() }
    }
}

impl<S, P, C> Layer<S> for FallbackLayer<P, C> {
    type Service = Fallback<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::new(inner, self)
    }
}
