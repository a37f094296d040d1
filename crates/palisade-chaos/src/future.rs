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
    /// Dropping it cancels an injected delay, drops the inner call (also a hanging one) and
    /// releases the reserved inner service it holds during a delay.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, S::Future, S::Response>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F, Res> {
        Inner { #[pin] fut: F },
        Delayed { sleep: Pin<Box<Sleep>>, svc: Option<S>, action: Option<Action<Req, Res>> },
        Hang { #[pin] fut: F },
        Hung,
        Answer { result: Option<Result<Res, BoxError>> },
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Delayed { .. } => "delayed",
            State::Hang { .. } | State::Hung => "hang",
            State::Answer { .. } => "answer",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    #[inline]
    pub(crate) fn inner(fut: S::Future) -> Self {
        Self { state: State::Inner { fut } }
    }

    pub(crate) fn hang(fut: S::Future) -> Self {
        Self { state: State::Hang { fut } }
    }

    pub(crate) fn answer(result: Result<S::Response, BoxError>) -> Self {
        Self { state: State::Answer { result: Some(result) } }
    }

    pub(crate) fn delayed(delay: Duration, svc: Option<S>, action: Action<Req, S::Response>) -> Self {
        Self {
            state: State::Delayed { sleep: Box::pin(tokio::time::sleep(delay)), svc, action: Some(action) },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Delayed { sleep, svc, action } => {
                    ready!(sleep.as_mut().poll(cx));
                    let next = match (action.take(), svc.take()) {
                        (Some(Action::Call(req)), Some(mut svc)) => State::Inner { fut: svc.call(req) },
                        (Some(Action::Hang(req)), Some(mut svc)) => State::Hang { fut: svc.call(req) },
                        (Some(Action::Answer(result)), _) => State::Answer { result: Some(result) },
                        _ => State::Answer { result: None },
                    };
                    this.state.set(next);
                }
                StateProj::Hang { fut } => {
                    // The inner call runs to its end; its answer is dropped and never given.
                    let _ = ready!(fut.poll(cx));
                    this.state.set(State::Hung);
                }
                StateProj::Hung => return Poll::Pending,
                StateProj::Answer { result } => {
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
