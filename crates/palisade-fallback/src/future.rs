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
    pub struct ResponseFuture<Fut, C, Provider, Req, Res>
    where
        Provider: ProviderTrait<Req, Res>,
    {
        #[pin]
        state: State<Fut, Provider::Future, Provider::Saved>,
        shared: Arc<Shared<C, Provider>>,
        _marker: PhantomData<fn(Req) -> Res>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateProjReplace]
    enum State<Fut, PF, Saved> {
        // The inner call and what the provider kept of the request (nothing for a closure
        // without the request: the pass path's future is the inner one plus a tag and the
        // shared state).
        Inner { #[pin] fut: Fut, saved: Saved },
        // A provider attempt (every provider's future is one boxed pointer) and the kept
        // request for the providers after it.
        Fallback { #[pin] fut: PF, index: usize, reason: FallbackReason, rest: Option<Saved> },
        Done,
    }
}

impl<Fut, C, Provider, Req, Res> fmt::Debug for ResponseFuture<Fut, C, Provider, Req, Res>
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

impl<Fut, C, Provider, Req, Res> ResponseFuture<Fut, C, Provider, Req, Res>
where
    Provider: ProviderTrait<Req, Res>,
{
    #[inline]
    pub(crate) fn inner(fut: Fut, shared: Arc<Shared<C, Provider>>, saved: Provider::Saved) -> Self {
        Self { state: State::Inner { fut, saved }, shared, _marker: PhantomData }
    }

    pub(crate) fn fallback(
        shared: Arc<Shared<C, Provider>>,
        saved: Provider::Saved,
        cause: FallbackCause<Res>,
        reason: FallbackReason,
    ) -> Self {
        let state = first(&shared, saved, cause, reason);
        Self { state, shared, _marker: PhantomData }
    }
}

impl<Fut, E, C, Provider, Req, Res> Future for ResponseFuture<Fut, C, Provider, Req, Res>
where
    Fut: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    Provider: ProviderTrait<Req, Res>,
    C: Classify<Res, BoxError>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Inner { fut, .. } = this.state.as_mut().project() {
            let result = ready!(fut.poll(cx)).map_err(Into::into);
            let reason = this.shared.reason(&result);
            // Done either way: the inner future is finished, the kept request moves on.
            let StateProjReplace::Inner { saved, .. } = this.state.as_mut().project_replace(State::Done)
            else {
                return Poll::Ready(result);
            };
            let Some(reason) = reason else {
                return Poll::Ready(result);
            };
            this.state.set(first(this.shared, saved, cause(result), reason));
        }
        poll_fallback(this.state, this.shared, cx)
    }
}

fn cause<Res>(result: Result<Res, BoxError>) -> FallbackCause<Res> {
    match result {
        Ok(res) => FallbackCause::Response(res),
        Err(e) => FallbackCause::Error(e),
    }
}

/// Counts a triggered fallback and starts the first provider.
#[cold]
#[inline(never)]
fn first<Fut, C, Provider, Req, Res>(
    shared: &Shared<C, Provider>,
    saved: Provider::Saved,
    cause: FallbackCause<Res>,
    reason: FallbackReason,
) -> State<Fut, Provider::Future, Provider::Saved>
where
    Provider: ProviderTrait<Req, Res>,
{
    shared.stats.triggered.increment();
    start(shared, saved, 0, cause, reason)
}

/// Starts provider `index` with the kept request: a clone while later providers may still
/// need it, the kept request itself for the last one.
fn start<Fut, C, Provider, Req, Res>(
    shared: &Shared<C, Provider>,
    saved: Provider::Saved,
    index: usize,
    cause: FallbackCause<Res>,
    reason: FallbackReason,
) -> State<Fut, Provider::Future, Provider::Saved>
where
    Provider: ProviderTrait<Req, Res>,
{
    let (request, rest) =
        if index + 1 < shared.provider.providers() { (saved.clone(), Some(saved)) } else { (saved, None) };
    State::Fallback { fut: shared.provider.call(index, request, cause), index, reason, rest }
}

/// Drives the providers: the next one on failure, until one answers or none is left.
#[inline(never)]
fn poll_fallback<Fut, C, Provider, Req, Res>(
    mut state: Pin<&mut State<Fut, Provider::Future, Provider::Saved>>,
    shared: &Shared<C, Provider>,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, BoxError>>
where
    Provider: ProviderTrait<Req, Res>,
    C: Classify<Res, BoxError>,
{
    loop {
        let (result, index, reason, rest) = match state.as_mut().project() {
            StateProj::Fallback { fut, index, reason, rest } => (ready!(fut.poll(cx)), *index, *reason, rest),
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
        let saved = match rest.take() {
            Some(saved) if next < shared.provider.providers() => saved,
            _ => {
                stats.failed.increment();
                stats.bus.publish(FallbackEvent::Exhausted { providers: next, reason });
                state.set(State::Done);
                return Poll::Ready(result);
            }
        };
        state.set(start(shared, saved, next, cause(result), reason));
    }
}
