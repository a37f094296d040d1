use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use palisade_core::rejection::Overloaded;
use palisade_core::BoxError;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::{PollSemaphore, WaitForCancellationFutureOwned};
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
    /// Made when `poll_ready` first waits: wakes it when the scope closes or is cancelled.
    closing: Option<Pin<Box<ClosingWait>>>,
}

pin_project_lite::pin_project! {
    /// Waits for either of the scope's tokens (a detached scope's timeout cancels only one).
    struct ClosingWait {
        #[pin]
        closing: WaitForCancellationFutureOwned,
        #[pin]
        cancelled: WaitForCancellationFutureOwned,
    }
}

impl ClosingWait {
    /// Registers the waker on both tokens; whether either fired.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        let a = this.closing.poll(cx).is_ready();
        let b = this.cancelled.poll(cx).is_ready();
        a || b
    }
}

impl<S: Clone> Clone for ScopeService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            scope: self.scope.clone(),
            limit: self.limit.clone(),
            permit: None,
            admitted: false,
            closing: None,
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
        Self { inner, scope, limit, permit: None, admitted: false, closing: None }
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
            return self.refuse();
        }
        if self.permit.is_none() {
            if let Some(limit) = &mut self.limit {
                match limit.poll_acquire(cx) {
                    Poll::Pending => return self.wait_or_refuse(cx),
                    Poll::Ready(Some(permit)) => self.permit = Some(permit),
                    Poll::Ready(None) => return self.refuse(),
                }
            }
        }
        let ready = self.inner.poll_ready(cx).map_err(Into::into);
        self.admitted = matches!(ready, Poll::Ready(Ok(())));
        if ready.is_pending() {
            return self.wait_or_refuse(cx);
        }
        ready
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // After `poll_ready` admitted it, the scope was checked there (a cancellation in
        // between is seen by the response future); a `call` without it checks now, and
        // takes a permit of the limit if it can (never more than the limit at once).
        let admitted = std::mem::take(&mut self.admitted);
        if !admitted && self.scope.is_closing() {
            return ResponseFuture::refused(self.scope.closed_error().into());
        }
        let mut permit = self.permit.take();
        if permit.is_none() {
            if let Some(limit) = self.scope.limit() {
                match limit.clone().try_acquire_owned() {
                    Ok(p) => permit = Some(p),
                    Err(_) => {
                        return ResponseFuture::refused(Overloaded::new(self.scope.name().to_owned()).into())
                    }
                }
            }
        }
        let token = self.scope.request_token();
        ResponseFuture::new(self.inner.call(request), &self.scope, token, permit)
    }
}

impl<S> ScopeService<S> {
    /// Refuses with `Closed`, releasing a reserved permit.
    fn refuse(&mut self) -> Poll<Result<(), BoxError>> {
        self.permit = None;
        self.admitted = false;
        self.closing = None;
        Poll::Ready(Err(self.scope.closed_error().into()))
    }

    /// `poll_ready` is about to answer `Pending`: also wake it when the scope closes.
    fn wait_or_refuse(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let scope = &self.scope;
        let wait = self.closing.get_or_insert_with(|| {
            Box::pin(ClosingWait {
                closing: scope.inner.closing.clone().cancelled_owned(),
                cancelled: scope.inner.token.clone().cancelled_owned(),
            })
        });
        if wait.as_mut().poll(cx) {
            return self.refuse();
        }
        Poll::Pending
    }
}
