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
use crate::provider::{FallbackCause, Provider as ProviderTrait};

pin_project! {
    /// The response future of [`Fallback`](crate::Fallback): the inner call, then, if it
    /// failed, the fallback providers in order.
    ///
    /// Dropping it drops (cancels) whichever call is in flight.
    pub struct ResponseFuture<F, C, Provider, Req, Res>
    where
        Provider: ProviderTrait<Req, Res>,
    {
        #[pin]
        state: State<F, Provider::Future>,
        shared: Arc<Shared<C, Provider>>,
        saved: Option<Provider::Saved>,
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

impl<F, C, Provider, Req, Res> fmt::Debug for ResponseFuture<F, C, Provider, Req, Res>
where
    Provider: ProviderTrait<Req, Res>,
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

impl<F, C, Provider, Req, Res> ResponseFuture<F, C, Provider, Req, Res>
where
    Provider: ProviderTrait<Req, Res>,
{
    #[inline]
    pub(crate) fn inner(fut: F, shared: Arc<Shared<C, Provider>>, saved: Provider::Saved) -> Self {
        Self { state: State::Inner { fut }, shared, saved: Some(saved), _marker: PhantomData }
    }

    pub(crate) fn fallback(
        shared: Arc<Shared<C, Provider>>,
        saved: Provider::Saved,
        cause: FallbackCause<Res>,
        reason: FallbackReason,
    ) -> Self {
        let mut this = Self { state: State::Done, shared, saved: Some(saved), _marker: PhantomData };
        if let Some(fut) = start(&this.shared, &mut this.saved, 0, cause) {
            this.state = State::Fallback { fut, index: 0, reason };
        }
        this
    }
}

impl<F, E, C, Provider, Req, Res> Future for ResponseFuture<F, C, Provider, Req, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    Provider: ProviderTrait<Req, Res>,
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
            fall_back(this.state.as_mut(), this.shared, this.saved, result, reason);
        }
        poll_fallback(this.state, this.shared, this.saved, cx)
    }
}

/// Leaves the inner call for the first provider.
#[cold]
#[inline(never)]
fn fall_back<F, C, Provider, Req, Res>(
    mut state: Pin<&mut State<F, Provider::Future>>,
    shared: &Shared<C, Provider>,
    saved: &mut Option<Provider::Saved>,
    result: Result<Res, BoxError>,
    reason: FallbackReason,
) where
    Provider: ProviderTrait<Req, Res>,
{
    match start(shared, saved, 0, cause(result)) {
        Some(fut) => state.set(State::Fallback { fut, index: 0, reason }),
        None => state.set(State::Done),
    }
}

fn cause<Res>(result: Result<Res, BoxError>) -> FallbackCause<Res> {
    match result {
        Ok(res) => FallbackCause::Response(res),
        Err(e) => FallbackCause::Error(e),
    }
}

/// Starts provider `index` with the saved request: a clone while later providers may still
/// need it, the saved request itself for the last one. Counts a triggered fallback at 0.
/// `None` only when the saved request is gone (polled after completion).
fn start<C, Provider, Req, Res>(
    shared: &Shared<C, Provider>,
    saved: &mut Option<Provider::Saved>,
    index: usize,
    cause: FallbackCause<Res>,
) -> Option<Provider::Future>
where
    Provider: ProviderTrait<Req, Res>,
{
    if index == 0 {
        shared.stats.triggered.increment();
    }
    let request = if index + 1 < shared.provider.providers() { saved.clone() } else { saved.take() };
    Some(shared.provider.call(index, request?, cause))
}

/// Drives the providers: the next one on failure, until one answers or none is left.
#[inline(never)]
fn poll_fallback<F, C, Provider, Req, Res>(
    mut state: Pin<&mut State<F, Provider::Future>>,
    shared: &Shared<C, Provider>,
    saved: &mut Option<Provider::Saved>,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, BoxError>>
where
    Provider: ProviderTrait<Req, Res>,
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
        match start(shared, saved, next, cause(result)) {
            Some(fut) => state.set(State::Fallback { fut, index: next, reason }),
            None => state.set(State::Done),
        }
    }
}
