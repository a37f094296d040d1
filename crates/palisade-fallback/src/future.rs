//! The response future of [`Fallback`](crate::Fallback).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use palisade_core::{BoxError, Classify};
use pin_project_lite::pin_project;

use crate::event::{FallbackEvent, FallbackReason};
use crate::layer::Shared;
use crate::provider::{FallbackCause, Provider, ProviderKind};

pin_project! {
    /// The response future of [`Fallback`](crate::Fallback): the inner call, then, if it
    /// failed, the fallback providers in order.
    ///
    /// Dropping it drops (cancels) whichever call is in flight.
    pub struct ResponseFuture<F, P, C, Req, Res>
    where
        P: Provider<Req, Res>,
    {
        #[pin]
        state: State<F, P::Future>,
        shared: Arc<Shared<P, C>>,
        saved: Option<P::Saved>,
        _marker: PhantomData<fn(Req) -> Res>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, PF> {
        Inner { #[pin] fut: F },
        // A provider attempt; every provider's future is one boxed pointer, so the pass path
        // moves a future no bigger than the inner one plus a tag.
        Fallback { #[pin] fut: PF, index: usize, reason: FallbackReason },
        Done,
    }
}

impl<F, P, C, Req, Res> fmt::Debug for ResponseFuture<F, P, C, Req, Res>
where
    P: Provider<Req, Res>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Fallback { .. } => "fallback",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish_non_exhaustive()
    }
}

impl<F, P, C, Req, Res> ResponseFuture<F, P, C, Req, Res>
where
    P: Provider<Req, Res>,
{
    #[inline]
    pub(crate) fn inner(fut: F, shared: Arc<Shared<P, C>>, saved: P::Saved) -> Self {
        Self { state: State::Inner { fut }, shared, saved: Some(saved), _marker: PhantomData }
    }

    #[inline]
    pub(crate) fn fallback(
        shared: Arc<Shared<P, C>>,
        saved: P::Saved,
        cause: FallbackCause<Res>,
        reason: FallbackReason,
    ) -> Self {
        shared.stats.triggered.increment();
        // Later providers of a chain need the request too.
        let (first, rest) =
            if shared.provider.providers() > 1 { (saved.clone(), Some(saved)) } else { (saved, None) };
        let fut = shared.provider.call(0, first, cause);
        Self { state: State::Fallback { fut, index: 0, reason }, shared, saved: rest, _marker: PhantomData }
    }
}

/// The saved request for attempt `index`: a clone while later providers may still need it.
fn saved_for<P: ProviderKind, T: Clone>(provider: &P, saved: &mut Option<T>, index: usize) -> Option<T> {
    if index + 1 < provider.providers() {
        saved.clone()
    } else {
        saved.take()
    }
}

impl<F, E, P, C, Req, Res> Future for ResponseFuture<F, P, C, Req, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    P: Provider<Req, Res>,
    C: Classify<Res, BoxError>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Inner { fut } = this.state.as_mut().project() {
            let result = ready!(fut.poll(cx)).map_err(Into::into);
            let Some(reason) = this.shared.reason(&result) else {
                this.state.set(State::Done);
                return Poll::Ready(result);
            };
            let cause = match result {
                Ok(res) => FallbackCause::Response(res),
                Err(e) => FallbackCause::Error(e),
            };
            start(this.state.as_mut(), this.shared, this.saved, 0, cause, reason);
        }
        poll_fallback(this.state, this.shared, this.saved, cx)
    }
}

/// Starts provider `index`.
#[inline(never)]
fn start<F, P, C, Req, Res>(
    mut state: Pin<&mut State<F, P::Future>>,
    shared: &Shared<P, C>,
    saved: &mut Option<P::Saved>,
    index: usize,
    cause: FallbackCause<Res>,
    reason: FallbackReason,
) where
    P: Provider<Req, Res>,
{
    if index == 0 {
        shared.stats.triggered.increment();
    }
    match saved_for(&shared.provider, saved, index) {
        Some(saved) => {
            let fut = shared.provider.call(index, saved, cause);
            state.set(State::Fallback { fut, index, reason });
        }
        // Only reachable when polled after completion.
        None => state.set(State::Done),
    }
}

/// Drives the providers: the next one on failure, until one answers or none is left.
#[inline(never)]
fn poll_fallback<F, P, C, Req, Res>(
    mut state: Pin<&mut State<F, P::Future>>,
    shared: &Shared<P, C>,
    saved: &mut Option<P::Saved>,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, BoxError>>
where
    P: Provider<Req, Res>,
    C: Classify<Res, BoxError>,
{
    loop {
        let (result, index, reason) = match state.as_mut().project() {
            StateProj::Fallback { fut, index, reason } => (ready!(fut.poll(cx)), *index, *reason),
            StateProj::Inner { .. } | StateProj::Done => {
                return Poll::Ready(Err("fallback response future polled after completion".into()));
            }
        };
        let stats = &shared.stats;
        if !shared.classifier.classify(&result).is_failure() {
            stats.used.increment();
            if stats.bus.is_observed() {
                stats.bus.publish(FallbackEvent::Used {
                    provider: shared.provider.provider_name(index).clone(),
                    index,
                    reason,
                });
            }
            state.set(State::Done);
            return Poll::Ready(result);
        }
        stats.provider_failures.increment();
        if stats.bus.is_observed() {
            let error = match &result {
                Err(e) => Arc::from(e.to_string()),
                Ok(_) => Arc::from("failed response"),
            };
            stats.bus.publish(FallbackEvent::ProviderFailed {
                provider: shared.provider.provider_name(index).clone(),
                index,
                error,
            });
        }
        let next = index + 1;
        if next >= shared.provider.providers() || saved.is_none() {
            stats.failed.increment();
            stats.bus.publish(FallbackEvent::Exhausted { providers: next, reason });
            state.set(State::Done);
            return Poll::Ready(result);
        }
        let cause = match result {
            Ok(res) => FallbackCause::Response(res),
            Err(e) => FallbackCause::Error(e),
        };
        start(state.as_mut(), shared, saved, next, cause, reason);
    }
}
