//! The [`Fallback`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::__private::{Counter, Tallied, Tally};
use palisade_core::{BoxError, Classify};
use tower_service::Service;

use crate::event::FallbackReason;
use crate::future::ResponseFuture;
use crate::handle::FallbackHandle;
use crate::layer::{FallbackLayer, Shared};
use crate::provider::FallbackCause;

/// A service's handle on the layer state plus its own count of calls not yet added to the
/// shared `calls` counter (core's tally: added every 64 calls and when the service is
/// dropped), so that a call touches no shared counter.
type Local<C, Provider> = Tally<Shared<C, Provider>>;

impl<C, Provider> Tallied for Shared<C, Provider> {
    fn tally_counter(&self) -> &Counter {
        &self.stats.calls
    }
}

/// Answers from a fallback when the inner service fails or a palisade layer refuses the call;
/// made by [`FallbackLayer`].
///
/// # Clone
///
/// Clones share the layer's provider, classifier and counters. A clone starts un-ready: an
/// admission refusal kept from `poll_ready` stays with the service that saw it.
pub struct Fallback<S, C, Provider> {
    inner: S,
    local: Local<C, Provider>,
    /// A refusal from the inner `poll_ready` that the next `call` answers from the fallback.
    refused: Option<(BoxError, FallbackReason)>,
}

impl<S: Clone, C, Provider> Clone for Fallback<S, C, Provider> {
    fn clone(&self) -> Self {
        Self::from_shared(self.inner.clone(), self.local.shared().clone())
    }
}

impl<S: fmt::Debug, C, Provider> fmt::Debug for Fallback<S, C, Provider> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("name", &self.local.shared().stats.name)
            .field("refused", &self.refused.as_ref().map(|(_, reason)| reason))
            .finish()
    }
}

impl<S, C, Provider> Fallback<S, C, Provider> {
    /// Wraps `inner` with the fallback of `layer` (sharing its state).
    pub fn new(inner: S, layer: &FallbackLayer<C, Provider>) -> Self {
        Self::from_shared(inner, layer.shared().clone())
    }

    fn from_shared(inner: S, shared: Arc<Shared<C, Provider>>) -> Self {
        Self { inner, local: Tally::new(shared), refused: None }
    }

    /// A handle on the layer's counters and events.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle { stats: self.local.shared().stats.clone() }
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

impl<S, C, Provider, Req> Service<Req> for Fallback<S, C, Provider>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Provider: crate::provider::Provider<Req, S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, Provider, Req, S::Response>;

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
                match self.local.shared().reason(&result) {
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
        self.local.count();
        let shared = self.local.shared();
        let saved = shared.provider.save(&req);
        match self.refused.take() {
            Some((err, reason)) => {
                drop(req);
                ResponseFuture::fallback(shared.clone(), saved, FallbackCause::Error(err), reason)
            }
            None => ResponseFuture::inner(self.inner.call(req), shared.clone(), saved),
        }
    }
}
