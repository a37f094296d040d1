//! Fallback providers: what answers when the inner service does not.
//!
//! The builder makes them: [`FnProvider`] from
//! [`fallback_fn`](crate::FallbackBuilder::fallback_fn), [`FnWithRequestProvider`] from
//! [`fallback_fn_with_request`](crate::FallbackBuilder::fallback_fn_with_request), and
//! [`ServiceProvider`] from [`fallback_service`](crate::FallbackBuilder::fallback_service) and
//! [`fallback_chain`](crate::FallbackBuilder::fallback_chain). The [`Provider`] trait is
//! sealed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use palisade_core::config::{ensure, ConfigError};
use palisade_core::rejection::{find_rejection, Rejection};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower_service::Service;

/// What made the inner call fall back: its error, or its failed response.
#[derive(Debug)]
pub enum FallbackCause<Res> {
    /// The inner service (or a palisade layer inside it) answered an error.
    Error(BoxError),
    /// The inner service answered a response the classifier judged a failure.
    Response(Res),
}

/// What a fallback closure receives: why the call fell back and, if asked for, the request.
#[derive(Debug)]
pub struct FallbackContext<Req, Res> {
    cause: FallbackCause<Res>,
    request: Option<Req>,
}

impl<Req, Res> FallbackContext<Req, Res> {
    /// A context for `cause`, with or without the request (useful to test a fallback closure).
    pub fn new(cause: FallbackCause<Res>, request: Option<Req>) -> Self {
        Self { cause, request }
    }

    /// Why the call fell back.
    pub fn cause(&self) -> &FallbackCause<Res> {
        &self.cause
    }

    /// The error, if the inner service answered one.
    pub fn error(&self) -> Option<&BoxError> {
        match &self.cause {
            FallbackCause::Error(e) => Some(e),
            FallbackCause::Response(_) => None,
        }
    }

    /// The failed response, if the inner service answered one.
    pub fn response(&self) -> Option<&Res> {
        match &self.cause {
            FallbackCause::Response(r) => Some(r),
            FallbackCause::Error(_) => None,
        }
    }

    /// The palisade rejection inside the error, if a palisade layer refused the call.
    pub fn rejection(&self) -> Option<&dyn Rejection> {
        self.error().and_then(|e| find_rejection(e.as_ref()))
    }

    /// The request, when the fallback was built with
    /// [`fallback_fn_with_request`](crate::FallbackBuilder::fallback_fn_with_request).
    pub fn request(&self) -> Option<&Req> {
        self.request.as_ref()
    }

    /// Takes the request out of the context.
    pub fn take_request(&mut self) -> Option<Req> {
        self.request.take()
    }

    /// The cause and the request.
    pub fn into_parts(self) -> (FallbackCause<Res>, Option<Req>) {
        (self.cause, self.request)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Every provider kind; lets [`FallbackBuilder::build`](crate::FallbackBuilder::build) accept
/// only a builder that has one. Sealed.
pub trait ProviderKind: sealed::Sealed {
    /// How many providers are tried, in order.
    fn providers(&self) -> usize;

    /// The name of provider `index` (used in events).
    fn provider_name(&self, index: usize) -> &Arc<str>;

    #[doc(hidden)]
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.providers() > 0, "fallback_chain", "must name at least one service")
    }
}

/// A fallback for requests `Req` answering `Res`. Sealed: built by
/// [`FallbackBuilder`](crate::FallbackBuilder).
pub trait Provider<Req, Res>: ProviderKind {
    /// What the layer keeps of each request before calling the inner service (`()` or a
    /// clone of the request).
    type Saved: Clone;
    /// The future of one provider attempt.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// Keeps what the provider needs of `req`; called on every call.
    fn save(&self, req: &Req) -> Self::Saved;

    /// Starts provider `index` with the saved request and the cause of the fallback.
    fn call(&self, index: usize, saved: Self::Saved, cause: FallbackCause<Res>) -> Self::Future;
}

// === impl FnProvider ===

/// A boxed fallback future: `Send`, its error boxed.
pub type BoxFallbackFuture<Res> = Pin<Box<dyn Future<Output = Result<Res, BoxError>> + Send>>;

/// A fallback closure after erasure: takes the context, gives a boxed future.
type ErasedFn<Req, Res> = Arc<dyn Fn(FallbackContext<Req, Res>) -> BoxFallbackFuture<Res> + Send + Sync>;

/// Erases the user's closure once, at construction: the provider's type then names neither
/// the closure nor its error type, and no where-clause of palisade's mentions them.
///
/// That is what lets a future that awaits a fallback service be spawned when the closure
/// returns `BoxError` (rust-lang/rust#64552: with the closure type and an
/// `E: Into<BoxError>` bound in the provider's impl, rustc cannot prove such a future
/// `Send`, "implementation of `From` is not general enough"). It costs one allocation per
/// fallback (the boxed future), never on the pass path, and makes the provider's type
/// nameable: `FnProvider<Req, Res>`.
fn erase<Req, Res, F, Fut, E>(f: F) -> ErasedFn<Req, Res>
where
    F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Res, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    Arc::new(move |ctx| {
        let fut = f(ctx);
        Box::pin(async move { fut.await.map_err(Into::into) })
    })
}

/// A fallback closure that does not see the request (erased at construction; see
/// [`FallbackBuilder::fallback_fn`](crate::FallbackBuilder::fallback_fn)).
pub struct FnProvider<Req, Res> {
    f: ErasedFn<Req, Res>,
    name: Arc<str>,
}

impl<Req, Res> Clone for FnProvider<Req, Res> {
    fn clone(&self) -> Self {
        Self { f: self.f.clone(), name: self.name.clone() }
    }
}

impl<Req, Res> FnProvider<Req, Res> {
    pub(crate) fn new<F, Fut, E>(f: F) -> Self
    where
        F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self { f: erase(f), name: Arc::from("fn") }
    }
}

impl<Req, Res> fmt::Debug for FnProvider<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnProvider").finish_non_exhaustive()
    }
}

impl<Req, Res> sealed::Sealed for FnProvider<Req, Res> {}

impl<Req, Res> ProviderKind for FnProvider<Req, Res> {
    fn providers(&self) -> usize {
        1
    }

    fn provider_name(&self, _index: usize) -> &Arc<str> {
        &self.name
    }
}

impl<Req, Res> Provider<Req, Res> for FnProvider<Req, Res> {
    type Saved = ();
    type Future = BoxFallbackFuture<Res>;

    #[inline]
    fn save(&self, _req: &Req) -> Self::Saved {}

    fn call(&self, _index: usize, (): (), cause: FallbackCause<Res>) -> Self::Future {
        (self.f)(FallbackContext { cause, request: None })
    }
}

// === impl FnWithRequestProvider ===

/// A fallback closure that receives a clone of the request in its context (erased at
/// construction, as [`FnProvider`]).
pub struct FnWithRequestProvider<Req, Res> {
    f: ErasedFn<Req, Res>,
    name: Arc<str>,
}

impl<Req, Res> Clone for FnWithRequestProvider<Req, Res> {
    fn clone(&self) -> Self {
        Self { f: self.f.clone(), name: self.name.clone() }
    }
}

impl<Req, Res> FnWithRequestProvider<Req, Res> {
    pub(crate) fn new<F, Fut, E>(f: F) -> Self
    where
        F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self { f: erase(f), name: Arc::from("fn") }
    }
}

impl<Req, Res> fmt::Debug for FnWithRequestProvider<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnWithRequestProvider").finish_non_exhaustive()
    }
}

impl<Req, Res> sealed::Sealed for FnWithRequestProvider<Req, Res> {}

impl<Req, Res> ProviderKind for FnWithRequestProvider<Req, Res> {
    fn providers(&self) -> usize {
        1
    }

    fn provider_name(&self, _index: usize) -> &Arc<str> {
        &self.name
    }
}

impl<Req: Clone, Res> Provider<Req, Res> for FnWithRequestProvider<Req, Res> {
    type Saved = Req;
    type Future = BoxFallbackFuture<Res>;

    #[inline]
    fn save(&self, req: &Req) -> Self::Saved {
        req.clone()
    }

    fn call(&self, _index: usize, saved: Req, cause: FallbackCause<Res>) -> Self::Future {
        (self.f)(FallbackContext { cause, request: Some(saved) })
    }
}

// === impl ServiceProvider ===

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
        let state = match self.chain.get(index) {
            Some((_, svc)) => ServiceState::NotReady { svc: svc.clone(), req: Some(saved) },
            None => ServiceState::Done,
        };
        Box::pin(ServiceFuture { state })
    }
}

pin_project! {
    /// One attempt on a fallback service: waits for readiness, then calls it.
    pub struct ServiceFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: ServiceState<S, Req, S::Future>,
    }
}

pin_project! {
    #[project = ServiceStateProj]
    enum ServiceState<S, Req, F> {
        NotReady { svc: S, req: Option<Req> },
        Called { #[pin] fut: F },
        Done,
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
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ServiceStateProj::NotReady { svc, req } => {
                    ready!(svc.poll_ready(cx)).map_err(Into::into)?;
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("fallback future polled after completion".into()));
                    };
                    let fut = svc.call(req);
                    this.state.set(ServiceState::Called { fut });
                }
                ServiceStateProj::Called { fut } => {
                    let out = ready!(fut.poll(cx)).map_err(Into::into);
                    this.state.set(ServiceState::Done);
                    return Poll::Ready(out);
                }
                ServiceStateProj::Done => {
                    return Poll::Ready(Err("fallback future polled after completion".into()));
                }
            }
        }
    }
}
