//! The [`Fallback`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::{BoxError, Classify, DefaultClassifier};
use tower_service::Service;

use crate::event::FallbackReason;
use crate::future::ResponseFuture;
use crate::handle::FallbackHandle;
use crate::layer::{FallbackLayer, Shared};
use crate::provider::{FallbackCause, Provider};

/// Answers from a fallback when the inner service fails or a palisade layer refuses the call;
/// made by [`FallbackLayer`].
///
/// # Clone
///
/// Clones share the layer's provider, classifier and counters. A clone starts un-ready: an
/// admission refusal kept from `poll_ready` stays with the service that saw it.
pub struct Fallback<S, P, C = DefaultClassifier> {
    inner: S,
    shared: Arc<Shared<P, C>>,
    /// A refusal from the inner `poll_ready` that the next `call` answers from the fallback.
    refused: Option<(BoxError, FallbackReason)>,
}

impl<S: Clone, P, C> Clone for Fallback<S, P, C> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone(), refused: None }
    }
}

impl<S: fmt::Debug, P, C> fmt::Debug for Fallback<S, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("name", &self.shared.stats.name)
            .field("refused", &self.refused.as_ref().map(|(_, reason)| reason))
            .finish()
    }
}

impl<S, P, C> Fallback<S, P, C> {
    /// Wraps `inner` with the fallback of `layer` (sharing its state).
    pub fn new(inner: S, layer: &FallbackLayer<P, C>) -> Self {
        Self { inner, shared: layer.shared().clone(), refused: None }
    }

    /// A handle on the layer's counters and events.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle { stats: self.shared.stats.clone() }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, C, Req> Service<Req> for Fallback<S, P, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: Provider<Req, S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, P, C, Req, S::Response>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.refused.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                let result: Result<S::Response, BoxError> = Err(e.into());
                match self.shared.reason(&result) {
                    Some(reason) => {
                        self.refused = result.err().map(|e| (e, reason));
                        Poll::Ready(Ok(()))
                    }
                    None => Poll::Ready(result.map(|_| ())),
                }
            }
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.shared.stats.calls.increment();
        let saved = self.shared.provider.save(&req);
        match self.refused.take() {
            Some((err, reason)) => {
                drop(req);
                ResponseFuture::fallback(self.shared.clone(), saved, FallbackCause::Error(err), reason)
            }
            None => ResponseFuture::inner(self.inner.call(req), self.shared.clone(), saved),
        }
    }
}
