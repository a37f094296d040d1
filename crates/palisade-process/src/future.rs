//! Response futures of [`ProcessService`](crate::ProcessService) and
//! [`WorkerProcess`](crate::WorkerProcess).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::sync::oneshot;

use crate::error::{ProcessError, WorkerError, WorkerErrorKind};
use crate::output::ProcessOutput;

type RunFuture = Pin<Box<dyn Future<Output = Result<ProcessOutput, ProcessError>> + Send>>;

/// The response future of [`ProcessService`](crate::ProcessService).
///
/// Dropping it before it completes kills the child's process group and reaps the child.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Running(RunFuture),
    Ready(Option<Result<ProcessOutput, ProcessError>>),
}

impl ResponseFuture {
    pub(crate) fn new(run: RunFuture) -> Self {
        Self { state: State::Running(run) }
    }

    pub(crate) fn ready(result: Result<ProcessOutput, ProcessError>) -> Self {
        Self { state: State::Ready(Some(result)) }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running(_) => "running",
            State::Ready(_) => "ready",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<ProcessOutput, ProcessError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Running(run) => {
                let out = ready!(run.as_mut().poll(cx));
                // The run is over: never poll it again (an `async fn` panics if resumed after
                // completion); a later poll answers `NotReady` below.
                self.state = State::Ready(None);
                Poll::Ready(out)
            }
            State::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                None => Poll::Ready(Err(ProcessError::new(
                    crate::error::ProcessErrorKind::NotReady,
                    &std::sync::Arc::from("?"),
                    "response future polled after completion",
                ))),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`WorkerProcess`](crate::WorkerProcess).
    ///
    /// Dropping it abandons the answer, but the request keeps its in-flight slot until the
    /// worker answers it (or dies): the slot counts requests the worker is really handling.
    pub struct WorkerFuture<R> {
        rx: Option<oneshot::Receiver<Result<R, WorkerError>>>,
        error: Option<WorkerError>,
    }
}

impl<R> WorkerFuture<R> {
    pub(crate) fn pending(rx: oneshot::Receiver<Result<R, WorkerError>>) -> Self {
        Self { rx: Some(rx), error: None }
    }

    pub(crate) fn failed(error: WorkerError) -> Self {
        Self { rx: None, error: Some(error) }
    }
}

impl<R> fmt::Debug for WorkerFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerFuture").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<R> Future for WorkerFuture<R> {
    type Output = Result<R, WorkerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.rx {
            Some(rx) => {
                let answer = ready!(Pin::new(rx).poll(cx));
                // A oneshot receiver panics if polled after it completed: drop it, so that a
                // later poll answers `NotReady` below.
                *this.rx = None;
                match answer {
                    Ok(result) => Poll::Ready(result),
                    Err(_) => Poll::Ready(Err(WorkerError::new(
                        WorkerErrorKind::Crashed,
                        "worker dropped the request without an answer",
                    ))),
                }
            }
            None => Poll::Ready(Err(this
                .error
                .take()
                .unwrap_or_else(|| WorkerError::new(WorkerErrorKind::NotReady, "polled after completion")))),
        }
    }
}
