//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use palisade_core::classify::Classify;
use palisade_core::BoxError;
use pin_project_lite::pin_project;

use crate::breaker::CallGuard;

pin_project! {
    /// The response of a call through a breaker: the inner call, recorded when it ends, or
    /// a [`CircuitOpen`](palisade_core::rejection::CircuitOpen) rejection (or, for a keyed breaker whose key set is full,
    /// a [`KeySetFull`](palisade_core::rejection::KeySetFull)), ready at once.
    ///
    /// Dropping it before the inner call ends cancels the inner call, which then counts as
    /// ignored (neither success nor failure); a half-open trial gives its slot back (so does
    /// a trial whose inner future panics).
    pub struct ResponseFuture<Fut, C> {
        #[pin]
        kind: Kind<Fut>,
        guard: Option<CallGuard<C>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<Fut> {
        Called { #[pin] future: Fut },
        Rejected { error: Option<BoxError> },
    }
}

impl<Fut, C> ResponseFuture<Fut, C> {
    pub(crate) fn called(future: Fut, guard: Option<CallGuard<C>>) -> Self {
        Self { kind: Kind::Called { future }, guard }
    }

    pub(crate) fn rejected(error: BoxError) -> Self {
        Self { kind: Kind::Rejected { error: Some(error) }, guard: None }
    }
}

impl<Fut, C> fmt::Debug for ResponseFuture<Fut, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        match &self.kind {
            Kind::Called { .. } => d.field("kind", &"called"),
            Kind::Rejected { error } => d.field("rejected", error),
        };
        d.field("guard", &self.guard).finish()
    }
}

impl<Fut, C, T, E> Future for ResponseFuture<Fut, C>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E> + Send + Sync + 'static,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future } => {
                let mut result = ready!(future.poll(cx));
                CallGuard::finish(this.guard, &mut result);
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "circuit breaker response polled after completion".into()))),
        }
    }
}
