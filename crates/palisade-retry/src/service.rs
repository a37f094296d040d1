use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::{Core, RetryHandle};
use crate::replay::{CloneRequest, Replay};
use crate::tally::Tally;

/// The service made by [`RetryLayer`](crate::RetryLayer).
///
/// `poll_ready` is the inner service's; `call` sends the first attempt on the service that
/// was polled and keeps a clone of the inner service for the retries, polling its readiness
/// before each one.
///
/// # Clone
///
/// Clones share the layer's state (budget, throttle, counters, listeners). The retry
/// service holds no reservation of its own, so a clone is as ready as a clone of the inner
/// service.
pub struct Retry<S, C = DefaultClassifier, P = CloneRequest> {
    inner: S,
    core: Tally<Core>,
    classifier: C,
    replay: P,
}

impl<S, C, P> Retry<S, C, P> {
    pub(crate) fn new(inner: S, core: Arc<Core>, classifier: C, replay: P) -> Self {
        Self { inner, core: Tally::new(core), classifier, replay }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the retry service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle to the shared counters, events and budget.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle { core: self.core.core().clone() }
    }
}

impl<S: Clone, C: Clone, P: Clone> Clone for Retry<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("config", &self.core)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, Req, C, P> Service<Req> for Retry<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    P: Replay<Req> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let exact = self.core.count();
        // The clone is kept for retries; the polled service sends the first attempt.
        let retry_service = self.inner.clone();
        ResponseFuture::start(
            &mut self.inner,
            retry_service,
            req,
            self.core.core().clone(),
            self.classifier.clone(),
            self.replay.clone(),
            exact,
        )
    }
}
