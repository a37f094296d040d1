//! [`CircuitBreaker`] and [`KeyedCircuitBreaker`]: the services.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::rejection::CircuitOpen;
use palisade_core::BoxError;
use tower_service::Service;

use crate::breaker::{Admission, Breaker, CallGuard, Holder, Striped};
use crate::future::ResponseFuture;
use crate::keyed::{KeyExtractor, KeyedShared, Route};
use crate::layer::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};

/// Admits `req` through `breaker` and calls `inner`, or answers with a rejection without
/// calling it.
#[inline]
fn admit_and_call<S, C, Req>(
    breaker: &Breaker<C>,
    hold: impl FnOnce() -> Holder<C>,
    inner: &mut S,
    req: Req,
) -> ResponseFuture<S::Future, C>
where
    S: Service<Req>,
{
    match breaker.core.admit() {
        Ok(Admission::Pass) => ResponseFuture::called(inner.call(req), None),
        Ok(admission) => {
            let guard = CallGuard::new(hold(), admission);
            ResponseFuture::called(inner.call(req), Some(guard))
        }
        Err(refusal) => {
            breaker.core.on_rejected(refusal.retry_after);
            let mut open = CircuitOpen::new(breaker.core.name().clone(), refusal.retry_after)
                .with_isolated(refusal.isolated);
            if let Some(key) = breaker.core.key() {
                open = open.with_key(key.clone());
            }
            ResponseFuture::rejected(open.into())
        }
    }
}

/// A service behind a circuit breaker; made by [`CircuitBreakerLayer`].
///
/// `poll_ready` is the inner service's; the breaker decides in `call`. A rejected call gets
/// a future that is ready at once with [`CircuitOpen`] and the inner service is not called.
///
/// # Clone
///
/// Clones share the breaker (it lives in the layer). A clone is as ready as a fresh inner
/// clone: the breaker reserves nothing in `poll_ready`.
pub struct CircuitBreaker<S, C = DefaultClassifier> {
    inner: S,
    breaker: Arc<Striped<C>>,
}

impl<S: Clone, C> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), breaker: self.breaker.clone() }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.breaker.core)
            .finish()
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Wraps `inner` in the breaker of `layer`.
    pub fn new(inner: S, layer: &CircuitBreakerLayer<C>) -> Self {
        Self { inner, breaker: layer.striped().clone() }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let striped = &self.breaker;
        admit_and_call(&striped.breaker, || striped.hold(), &mut self.inner, req)
    }
}

// === impl KeyedCircuitBreaker ===

/// A service behind one circuit breaker per request key; made by
/// [`KeyedCircuitBreakerLayer`].
///
/// # Clone
///
/// Clones share the set of breakers (it lives in the layer).
pub struct KeyedCircuitBreaker<S, C, K, F> {
    inner: S,
    shared: Arc<KeyedShared<C, K, F>>,
}

impl<S: Clone, C, K, F> Clone for KeyedCircuitBreaker<S, C, K, F> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug, C, K, F> fmt::Debug for KeyedCircuitBreaker<S, C, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, C, K, F> KeyedCircuitBreaker<S, C, K, F> {
    /// Wraps `inner` in the breakers of `layer`.
    pub fn new(inner: S, layer: &KeyedCircuitBreakerLayer<C, K, F>) -> Self {
        Self { inner, shared: layer.shared().clone() }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, K, F, Req> Service<Req> for KeyedCircuitBreaker<S, C, K, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
    F: KeyExtractor<Req, Key = K>,
    K: Hash + Eq + Clone + fmt::Debug,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, Arc<C>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.shared.route(&req) {
            Route::Breaker(breaker) => {
                admit_and_call(&breaker, || Holder::Direct(breaker.clone()), &mut self.inner, req)
            }
            Route::Pass => ResponseFuture::called(self.inner.call(req), None),
            Route::Refuse(error) => ResponseFuture::rejected(error),
        }
    }
}
