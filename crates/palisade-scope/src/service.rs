use std::fmt;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::PollSemaphore;
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
/// - A scope with a [limit](crate::ScopeBuilder::limit) admits that many requests (and
///   tasks) at once: `poll_ready` waits for a permit, which the response future holds until
///   it completes or is dropped.
///
/// # Example
///
/// ```
/// use palisade_scope::{Scope, ScopeService};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::new("api");
/// let svc = ScopeService::new(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }), scope.clone());
/// assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
/// scope.cancel();
/// assert!(svc.oneshot(2).await.unwrap_err().is::<palisade_core::rejection::Closed>());
/// # }
/// ```
///
/// # Clone
///
/// Clones share the scope (and its limit); a clone starts without a reserved permit.
pub struct ScopeService<S> {
    inner: S,
    scope: Scope,
    limit: Option<PollSemaphore>,
    permit: Option<OwnedSemaphorePermit>,
    /// `poll_ready` checked the scope and answered `Ready(Ok)`; `call` spends it.
    admitted: bool,
}

impl<S: Clone> Clone for ScopeService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            scope: self.scope.clone(),
            limit: self.limit.clone(),
            permit: None,
            admitted: false,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ScopeService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeService")
            .field("inner", &self.inner)
            .field("scope", &self.scope)
            .field("reserved", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> ScopeService<S> {
    /// Wraps `inner` so that its requests belong to `scope`.
    pub fn new(inner: S, scope: Scope) -> Self {
        let limit = scope.limit().cloned().map(PollSemaphore::new);
        Self { inner, scope, limit, permit: None, admitted: false }
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
            self.permit = None;
            self.admitted = false;
            return Poll::Ready(Err(self.scope.closed_error().into()));
        }
        if self.permit.is_none() {
            if let Some(limit) = &mut self.limit {
                match limit.poll_acquire(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(permit)) => self.permit = Some(permit),
                    Poll::Ready(None) => return Poll::Ready(Err(self.scope.closed_error().into())),
                }
            }
        }
        let ready = self.inner.poll_ready(cx).map_err(Into::into);
        self.admitted = matches!(ready, Poll::Ready(Ok(())));
        ready
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // After `poll_ready` admitted it, the scope was checked there (a cancellation in
        // between is seen by the response future); a `call` without it checks now.
        if !std::mem::take(&mut self.admitted) && self.scope.is_closing() {
            return ResponseFuture::refused(self.scope.closed_error().into());
        }
        let token = self.scope.request_token();
        let permit = self.permit.take();
        ResponseFuture::new(self.inner.call(request), &self.scope, token, permit)
    }
}
