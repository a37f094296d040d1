use std::task::{Context, Poll};

use palisade_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::scope::Scope;

/// A service whose requests belong to a [`Scope`] (built by [`ScopeLayer`](crate::ScopeLayer)).
///
/// - While the scope admits, requests pass through; each is counted in flight until its
///   response future completes or is dropped, so [`Scope::close`] can wait for it.
/// - Once the scope is closing or cancelled, `poll_ready` (and `call`) refuse with
///   palisade-core's [`Closed`](palisade_core::rejection::Closed) — `503` through palisade's
///   HTTP rejection layer.
/// - When the scope is cancelled, response futures in flight end with
///   [`Cancelled`](crate::error::Cancelled) at their next poll (they are woken): the inner
///   future is dropped, so the work it was doing stops.
///
/// # Clone
///
/// Clones share the scope.
#[derive(Clone, Debug)]
pub struct ScopeService<S> {
    inner: S,
    scope: Scope,
}

impl<S> ScopeService<S> {
    /// Wraps `inner` so that its requests belong to `scope`.
    pub fn new(inner: S, scope: Scope) -> Self {
        Self { inner, scope }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl<S, Req> Service<Req> for ScopeService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.scope.is_closing() {
            return Poll::Ready(Err(self.scope.closed_error().into()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if self.scope.is_closing() {
            return ResponseFuture::refused(self.scope.closed_error().into());
        }
        let token = self.scope.request_token();
        ResponseFuture::new(self.inner.call(request), &self.scope, token)
    }
}
