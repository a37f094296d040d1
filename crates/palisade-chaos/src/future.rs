//! The response future of [`Chaos`](crate::Chaos).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

/// What a call does after its (possibly injected) delay.
pub(crate) enum Action<Req, Res> {
    /// Call the inner service.
    Call(Req),
    /// Call the inner service and never answer.
    Hang(Req),
    /// Answer this (an injected fault or outcome) without calling the inner service.
    Answer(Result<Res, BoxError>),
}

pin_project! {
    /// The response future of [`Chaos`](crate::Chaos).
    ///
    /// A call with nothing injected is the inner future and nothing else; an injection keeps
    /// its state in one allocation. Dropping the future cancels an injected delay, drops the
    /// inner call (also a hanging one) and releases the reserved inner service it holds
    /// during a delay.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future, Pin<Box<Injected<S, Req>>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, I> {
        Inner { #[pin] fut: F },
        Injected { injected: I },
    }
}

pin_project! {
    /// An injected behaviour, driven to its end.
    struct Injected<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: InjectedState<S, Req, S::Future, S::Response>,
    }
}

pin_project! {
    #[project = InjectedProj]
    enum InjectedState<S, Req, F, Res> {
        Delayed { #[pin] sleep: Sleep, svc: Option<S>, action: Option<Action<Req, Res>> },
        Inner { #[pin] fut: F },
        Hang { #[pin] fut: F },
        Hung,
        Answer { result: Option<Result<Res, BoxError>> },
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Injected { injected } => match &injected.state {
                InjectedState::Delayed { .. } => "delayed",
                InjectedState::Inner { .. } => "inner",
                InjectedState::Hang { .. } | InjectedState::Hung => "hang",
                InjectedState::Answer { .. } => "answer",
            },
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    #[inline]
    pub(crate) fn inner(fut: S::Future) -> Self {
        Self { state: State::Inner { fut } }
    }

    fn injected(state: InjectedState<S, Req, S::Future, S::Response>) -> Self {
        Self { state: State::Injected { injected: Box::pin(Injected { state }) } }
    }

    pub(crate) fn hang(fut: S::Future) -> Self {
        Self::injected(InjectedState::Hang { fut })
    }

    pub(crate) fn answer(result: Result<S::Response, BoxError>) -> Self {
        Self::injected(InjectedState::Answer { result: Some(result) })
    }

    pub(crate) fn delayed(delay: Duration, svc: Option<S>, action: Action<Req, S::Response>) -> Self {
        // A huge delay (`Duration::MAX` from a closure) saturates to "effectively never".
        let sleep = tokio::time::sleep_until(palisade_core::time::deadline_from_now(delay));
        Self::injected(InjectedState::Delayed { sleep, svc, action: Some(action) })
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            StateProj::Injected { injected } => injected.as_mut().poll(cx),
        }
    }
}

impl<S, Req> Future for Injected<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                InjectedProj::Delayed { sleep, svc, action } => {
                    ready!(sleep.poll(cx));
                    let next = match (action.take(), svc.take()) {
                        (Some(Action::Call(req)), Some(mut svc)) => {
                            InjectedState::Inner { fut: svc.call(req) }
                        }
                        (Some(Action::Hang(req)), Some(mut svc)) => {
                            InjectedState::Hang { fut: svc.call(req) }
                        }
                        (Some(Action::Answer(result)), _) => InjectedState::Answer { result: Some(result) },
                        _ => InjectedState::Answer { result: None },
                    };
                    this.state.set(next);
                }
                InjectedProj::Inner { fut } => return fut.poll(cx).map_err(Into::into),
                InjectedProj::Hang { fut } => {
                    // The inner call runs to its end; its answer is dropped and never given.
                    let _ = ready!(fut.poll(cx));
                    this.state.set(InjectedState::Hung);
                }
                // Deliberately no waker: an injected hang answers never, until it is dropped
                // (the one `Pending` in palisade that nothing will wake).
                InjectedProj::Hung => return Poll::Pending,
                InjectedProj::Answer { result } => {
                    return Poll::Ready(
                        result
                            .take()
                            .unwrap_or_else(|| Err("chaos response future polled after completion".into())),
                    );
                }
            }
        }
    }
}
