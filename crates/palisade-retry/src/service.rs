//! `Retry<S>` (and the service type it shares with hedging).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::classify::DefaultClassifier;
use palisade_core::BoxError;
use tower_service::Service;

use crate::engine::{AttemptCore, Attempts, Call, RetryStrategy, Strategy};
use crate::handle::AttemptHandle;
use crate::replay::CloneRequest;
use crate::tally::Tally;

/// The service made by [`RetryLayer`](crate::RetryLayer).
///
/// `poll_ready` is the inner service's; `call` sends the first attempt on the service that
/// was polled and keeps a clone of the inner service for the retries, polling its readiness
/// before each one.
pub type Retry<S, C = DefaultClassifier, Replay = CloneRequest> = AttemptService<S, C, Replay, RetryStrategy>;

/// The service of the attempt engine: [`Retry`] or [`Hedge`](crate::hedge::Hedge), by its
/// [`Strategy`].
///
/// # Clone
///
/// Clones share the layer's state (budget, throttle, counters, listeners). The service
/// holds no reservation of its own, so a clone is as ready as a clone of the inner service.
pub struct AttemptService<S, C, Replay, St> {
    pub(crate) inner: S,
    pub(crate) core: Tally<St>,
    pub(crate) classifier: C,
    pub(crate) replay: Replay,
}

impl<S, C, Replay, St> AttemptService<S, C, Replay, St> {
    pub(crate) fn new(inner: S, core: Arc<AttemptCore<St>>, classifier: C, replay: Replay) -> Self {
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

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle to the shared counters, events and budget.
    pub fn handle(&self) -> AttemptHandle<St> {
        AttemptHandle { core: self.core.shared().clone() }
    }
}

impl<S: Clone, C: Clone, Replay: Clone, St> Clone for AttemptService<S, C, Replay, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, Replay: fmt::Debug, St: Strategy> fmt::Debug
    for AttemptService<S, C, Replay, St>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if St::PATTERN == "hedge" { "Hedge" } else { "Retry" };
        f.debug_struct(name)
            .field("inner", &self.inner)
            .field("config", &self.core)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, Req, C, Replay, St> Service<Req> for AttemptService<S, C, Replay, St>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Clone,
    Replay: crate::replay::Replay<Req> + Clone,
    St: Attempts<S, Req, C, Replay>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = St::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let exact = self.core.count();
        let core = self.core.shared().clone();
        let copy = core.admit(&req, &self.replay, exact);
        // The clone is kept for further attempts; the polled service sends the first one.
        let spare = self.inner.clone();
        St::start(Call {
            ready: &mut self.inner,
            spare,
            req,
            copy,
            core,
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
        })
    }
}
