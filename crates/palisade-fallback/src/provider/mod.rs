//! Fallback providers: what answers when the inner service does not.
//!
//! The builder makes them: [`FnProvider`] from
//! [`fallback_fn`](crate::FallbackBuilder::fallback_fn), [`FnWithRequestProvider`] from
//! [`fallback_fn_with_request`](crate::FallbackBuilder::fallback_fn_with_request), and
//! [`ServiceProvider`] from [`fallback_service`](crate::FallbackBuilder::fallback_service) and
//! [`fallback_chain`](crate::FallbackBuilder::fallback_chain). The [`Provider`] trait is
//! sealed.

use std::future::Future;
use std::sync::Arc;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::rejection::{find_rejection, Rejection};
use palisade_core::BoxError;

mod func;
mod service;

pub use func::{
    BoxFallbackFuture, FnProvider, FnWithRequestProvider, KeepRequest, WithRequest, WithoutRequest,
};
pub use service::{ServiceFuture, ServiceProvider};

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

pub(crate) mod sealed {
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
