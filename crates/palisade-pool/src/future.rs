//! The response future of [`Pool`](crate::Pool).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use palisade_core::BoxError;
use tokio::sync::oneshot;

use crate::handle::WorkerGuard;
use crate::worker::BoxResponse;

enum State<Res> {
    Failed(Option<BoxError>),
    Queued {
        reply: oneshot::Receiver<Result<BoxResponse<Res>, BoxError>>,
        // Keeps the worker alive while the request waits for a member.
        worker: Arc<WorkerGuard>,
    },
    Running(BoxResponse<Res>),
}

/// The response of a [`Pool`](crate::Pool) call: first waits for a member,
/// then runs the member's call.
///
/// Dropping it while the request waits gives its queue place back; dropping it while the
/// member works drops (cancels) the member's call.
pub struct ResponseFuture<Res> {
    state: State<Res>,
}

impl<Res> fmt::Debug for ResponseFuture<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Failed(_) => "failed",
            State::Queued { .. } => "queued",
            State::Running(_) => "running",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<Res> ResponseFuture<Res> {
    pub(crate) fn failed(err: BoxError) -> Self {
        Self { state: State::Failed(Some(err)) }
    }

    pub(crate) fn queued(
        reply: oneshot::Receiver<Result<BoxResponse<Res>, BoxError>>,
        worker: Arc<WorkerGuard>,
    ) -> Self {
        Self { state: State::Queued { reply, worker } }
    }
}

impl<Res> Future for ResponseFuture<Res> {
    type Output = Result<Res, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                State::Failed(err) => {
                    return Poll::Ready(Err(err
                        .take()
                        .unwrap_or_else(|| "ResponseFuture polled after completion".into())));
                }
                State::Queued { reply, worker } => match ready!(Pin::new(reply).poll(cx)) {
                    Ok(Ok(call)) => self.state = State::Running(call),
                    Ok(Err(err)) => {
                        self.state = State::Failed(None);
                        return Poll::Ready(Err(err));
                    }
                    Err(_) => {
                        let err = worker.shared.closed_error();
                        self.state = State::Failed(None);
                        return Poll::Ready(Err(err));
                    }
                },
                State::Running(call) => return call.as_mut().poll(cx),
            }
        }
    }
}
