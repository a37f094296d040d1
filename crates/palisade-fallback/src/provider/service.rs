//! [`ServiceProvider`]: one fallback service, or a chain of them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::service::ReadyCall;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{sealed, FallbackCause, Provider, ProviderKind};

/// One fallback service, or a chain of them tried in order.
///
/// Each attempt clones the service, drives the clone to readiness and calls it with a clone
/// of the request.
pub struct ServiceProvider<S> {
    chain: Arc<[(Arc<str>, S)]>,
}

impl<S> Clone for ServiceProvider<S> {
    fn clone(&self) -> Self {
        Self { chain: self.chain.clone() }
    }
}

impl<S> ServiceProvider<S> {
    pub(crate) fn new(chain: Vec<(Arc<str>, S)>) -> Self {
        Self { chain: chain.into() }
    }
}

impl<S> fmt::Debug for ServiceProvider<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.chain.iter().map(|(n, _)| &**n).collect();
        f.debug_struct("ServiceProvider").field("chain", &names).finish()
    }
}

impl<S> sealed::Sealed for ServiceProvider<S> {}

impl<S> ProviderKind for ServiceProvider<S> {
    fn providers(&self) -> usize {
        self.chain.len()
    }

    fn provider_name(&self, index: usize) -> &Arc<str> {
        // `index` is always below `providers()`; fall back to the last name anyway.
        let i = index.min(self.chain.len().saturating_sub(1));
        &self.chain[i].0
    }
}

impl<S, Req, Res> Provider<Req, Res> for ServiceProvider<S>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
{
    type Saved = Req;
    // Boxed: the response future keeps an attempt inline, so the pass path's future stays
    // the inner future plus a tag.
    type Future = Pin<Box<ServiceFuture<S, Req>>>;

    #[inline]
    fn save(&self, req: &Req) -> Self::Saved {
        req.clone()
    }

    fn call(&self, index: usize, saved: Req, _cause: FallbackCause<Res>) -> Self::Future {
        let call = self.chain.get(index).map(|(_, svc)| ReadyCall::new(svc.clone(), saved));
        Box::pin(ServiceFuture { call })
    }
}

pin_project! {
    /// One attempt on a fallback service: waits for readiness, then calls it (core's
    /// [`ReadyCall`]).
    pub struct ServiceFuture<S, Req>
    where
        S: Service<Req>,
    {
        // `None` when the chain has no service at the index asked for.
        #[pin]
        call: Option<ReadyCall<S, Req>>,
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ServiceFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFuture").finish_non_exhaustive()
    }
}

impl<S, Req> Future for ServiceFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().call.as_pin_mut() {
            Some(call) => call.poll(cx).map_err(Into::into),
            None => Poll::Ready(Err("palisade-fallback: no fallback service at this index".into())),
        }
    }
}
