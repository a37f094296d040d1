//! [`FnProvider`]: a fallback closure, erased once at construction, with or without the
//! request.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use palisade_core::BoxError;

use super::{sealed, FallbackCause, FallbackContext, Provider, ProviderKind};

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

/// What a [`FnProvider`] keeps of each request: nothing ([`WithoutRequest`]) or a clone
/// ([`WithRequest`]). Sealed.
pub trait KeepRequest<Req>: sealed::Sealed {
    /// What is kept.
    type Saved: Clone;
    #[doc(hidden)]
    fn save(req: &Req) -> Self::Saved;
    #[doc(hidden)]
    fn request(saved: Self::Saved) -> Option<Req>;
}

/// The closure's context holds no request (no clone, no bound on `Req`).
#[derive(Clone, Copy, Debug)]
pub enum WithoutRequest {}

/// The closure's context holds a clone of the request (`Req: Clone`).
#[derive(Clone, Copy, Debug)]
pub enum WithRequest {}

impl sealed::Sealed for WithoutRequest {}
impl sealed::Sealed for WithRequest {}

impl<Req> KeepRequest<Req> for WithoutRequest {
    type Saved = ();

    #[inline]
    fn save(_: &Req) {}

    fn request((): ()) -> Option<Req> {
        None
    }
}

impl<Req: Clone> KeepRequest<Req> for WithRequest {
    type Saved = Req;

    #[inline]
    fn save(req: &Req) -> Req {
        req.clone()
    }

    fn request(saved: Req) -> Option<Req> {
        Some(saved)
    }
}

/// A fallback closure (erased at construction; see
/// [`FallbackBuilder::fallback_fn`](crate::FallbackBuilder::fallback_fn)). `Keep` says
/// whether its context holds the request: [`WithoutRequest`] (from `fallback_fn`) or
/// [`WithRequest`] (from `fallback_fn_with_request`, see [`FnWithRequestProvider`]).
pub struct FnProvider<Req, Res, Keep = WithoutRequest> {
    f: ErasedFn<Req, Res>,
    name: Arc<str>,
    _keep: PhantomData<fn() -> Keep>,
}

/// A fallback closure that receives a clone of the request in its context.
pub type FnWithRequestProvider<Req, Res> = FnProvider<Req, Res, WithRequest>;

impl<Req, Res, Keep> Clone for FnProvider<Req, Res, Keep> {
    fn clone(&self) -> Self {
        Self { f: self.f.clone(), name: self.name.clone(), _keep: PhantomData }
    }
}

impl<Req, Res, Keep> FnProvider<Req, Res, Keep> {
    pub(crate) fn new<F, Fut, E>(f: F) -> Self
    where
        F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self { f: erase(f), name: Arc::from("fn"), _keep: PhantomData }
    }
}

impl<Req, Res, Keep> fmt::Debug for FnProvider<Req, Res, Keep> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnProvider").finish_non_exhaustive()
    }
}

impl<Req, Res, Keep> sealed::Sealed for FnProvider<Req, Res, Keep> {}

impl<Req, Res, Keep> ProviderKind for FnProvider<Req, Res, Keep> {
    fn providers(&self) -> usize {
        1
    }

    fn provider_name(&self, _index: usize) -> &Arc<str> {
        &self.name
    }
}

impl<Req, Res, Keep: KeepRequest<Req>> Provider<Req, Res> for FnProvider<Req, Res, Keep> {
    type Saved = Keep::Saved;
    type Future = BoxFallbackFuture<Res>;

    #[inline]
    fn save(&self, req: &Req) -> Self::Saved {
        Keep::save(req)
    }

    fn call(&self, _index: usize, saved: Self::Saved, cause: FallbackCause<Res>) -> Self::Future {
        (self.f)(FallbackContext::new(cause, Keep::request(saved)))
    }
}
