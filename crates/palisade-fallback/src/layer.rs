//! [`FallbackLayer`]: `new(f)`, `builder()`, `handle()`, the `Layer` impl, and the state a
//! layer shares with its services.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use palisade_core::rejection::find_rejection;
use palisade_core::{BoxError, Classify, DefaultClassifier};
use tower_layer::Layer;

use crate::builder::FallbackBuilder;
use crate::config::TriggerOn;
use crate::event::FallbackReason;
use crate::handle::{FallbackHandle, Stats};
use crate::provider::{FallbackContext, FnProvider};
use crate::service::Fallback;

/// What a layer and every service and clone it built share.
pub(crate) struct Shared<C, Provider> {
    pub(crate) provider: Provider,
    pub(crate) classifier: C,
    pub(crate) trigger_on: TriggerOn,
    pub(crate) stats: Arc<Stats>,
}

impl<C, Provider> Shared<C, Provider> {
    /// Whether `result` (an inner answer) starts the fallback, and why.
    ///
    /// With the default [`TriggerOn::FailuresAndRejections`], an error the classifier calls
    /// a failure starts the fallback whether or not it is a rejection: the error chain is
    /// searched for a rejection only when someone observes the reason (a listener or
    /// `tracing`), otherwise the reason is reported as [`FallbackReason::Error`] to nobody.
    #[inline]
    pub(crate) fn reason<Res>(&self, result: &Result<Res, BoxError>) -> Option<FallbackReason>
    where
        C: Classify<Res, BoxError>,
    {
        let failure = || self.trigger_on.failures() && self.classifier.classify(result).is_failure();
        match result {
            Ok(_) => failure().then_some(FallbackReason::FailedResponse),
            Err(e) => {
                if self.trigger_on == TriggerOn::FailuresAndRejections
                    && failure()
                    && !self.stats.bus.is_observed()
                {
                    return Some(FallbackReason::Error);
                }
                match find_rejection(e.as_ref()) {
                    Some(r) => self.trigger_on.rejections().then(|| FallbackReason::Rejection(r.kind())),
                    None => failure().then_some(FallbackReason::Error),
                }
            }
        }
    }
}

/// Answers from a fallback when the inner service fails or a palisade layer refuses the call.
///
/// Made by [`new`](Self::new) (a closure, the defaults) or [`builder`](Self::builder); see
/// the [crate docs](crate) for an example. `C` is the classifier, `Provider` what answers
/// instead ([`FnProvider`], [`FnWithRequestProvider`](crate::provider::FnWithRequestProvider)
/// or [`ServiceProvider`](crate::provider::ServiceProvider)).
///
/// # Clone
///
/// The layer keeps the provider, the classifier and the counters in an `Arc`: every service it
/// builds, and every clone of those, shares them and reports to the same
/// [`FallbackHandle`].
pub struct FallbackLayer<C, Provider> {
    shared: Arc<Shared<C, Provider>>,
}

impl<C, Provider> Clone for FallbackLayer<C, Provider> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<C, Provider> fmt::Debug for FallbackLayer<C, Provider> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.shared.stats.name)
            .field("trigger_on", &self.shared.trigger_on)
            .finish_non_exhaustive()
    }
}

impl FallbackLayer<(), ()> {
    /// A builder with [`FallbackConfig`](crate::FallbackConfig)'s defaults; see
    /// [`FallbackBuilder`].
    pub fn builder() -> FallbackBuilder {
        FallbackBuilder::default()
    }
}

impl<Req, Res> FallbackLayer<DefaultClassifier, FnProvider<Req, Res>> {
    /// A layer that answers from the closure `f` when the inner call fails or is refused,
    /// with the defaults (name `"fallback"`, every `Err` and every palisade rejection starts
    /// the fallback); it cannot fail. As
    /// [`FallbackBuilder::fallback_fn`], whose rules the closure follows.
    ///
    /// ```
    /// use palisade_core::BoxError;
    /// use palisade_fallback::{FallbackContext, FallbackLayer};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # tokio_test::block_on(async {
    /// let layer = FallbackLayer::new(|_: FallbackContext<u32, u32>| async { Ok::<_, BoxError>(0) });
    /// let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, BoxError>("down".into()) }));
    /// assert_eq!(svc.oneshot(7).await?, 0);
    /// # Ok::<_, BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn new<F, Fut, E>(f: F) -> Self
    where
        F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        FallbackBuilder::default().fallback_fn(f).build_unchecked()
    }
}

impl<C, Provider> FallbackLayer<C, Provider> {
    pub(crate) fn from_shared(shared: Arc<Shared<C, Provider>>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<C, Provider>> {
        &self.shared
    }

    /// A handle on the counters and events of this layer and every service it builds.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle { stats: self.shared.stats.clone() }
    }
}

impl<S, C, Provider> Layer<S> for FallbackLayer<C, Provider> {
    type Service = Fallback<S, C, Provider>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::new(inner, self)
    }
}
