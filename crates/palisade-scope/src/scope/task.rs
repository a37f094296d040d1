//! [`ScopeTask`]: the handle of a task spawned in a scope.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::error::{Cancelled, Panicked};

pin_project! {
    /// The handle of a task spawned with [`Scope::spawn`](crate::Scope::spawn): a future of its output, or of
    /// [`Cancelled`](crate::error::Cancelled), [`Panicked`] (component `"task"`, the scope's name) or [`Closed`](palisade_core::rejection::Closed) (spawned in a closing scope). Dropping
    /// the handle does not stop the task (the scope does).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_scope::{error::Cancelled, Scope};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let scope = Scope::new("jobs");
    /// let task = scope.spawn(async { tokio::time::sleep(Duration::from_secs(60)).await });
    /// task.abort();
    /// assert!(task.await.unwrap_err().is::<Cancelled>());
    /// # }
    /// ```
    pub struct ScopeTask<T> {
        state: TaskState<T>,
        name: Arc<str>,
    }
}

enum TaskState<T> {
    Running(JoinHandle<Option<std::thread::Result<T>>>),
    Refused(Option<BoxError>),
}

impl<T> fmt::Debug for ScopeTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeTask").field("scope", &self.name).finish_non_exhaustive()
    }
}

impl<T> ScopeTask<T> {
    pub(super) fn refused(error: BoxError, name: Arc<str>) -> Self {
        Self { state: TaskState::Refused(Some(error)), name }
    }

    pub(super) fn running(handle: JoinHandle<Option<std::thread::Result<T>>>, name: Arc<str>) -> Self {
        Self { state: TaskState::Running(handle), name }
    }

    /// Stops the task at its next poll (it then ends with [`Cancelled`](crate::error::Cancelled)).
    pub fn abort(&self) {
        if let TaskState::Running(h) = &self.state {
            h.abort();
        }
    }

    /// Whether the task ended.
    pub fn is_finished(&self) -> bool {
        match &self.state {
            TaskState::Running(h) => h.is_finished(),
            TaskState::Refused(_) => true,
        }
    }
}

impl<T> Future for ScopeTask<T> {
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state {
            TaskState::Refused(err) => {
                Poll::Ready(Err(err.take().unwrap_or_else(|| Cancelled::new(this.name.clone()).into())))
            }
            TaskState::Running(handle) => match Pin::new(handle).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Some(Ok(out)))) => Poll::Ready(Ok(out)),
                Poll::Ready(Ok(Some(Err(payload)))) => {
                    Poll::Ready(Err(Panicked::from_payload("task", this.name.clone(), payload).into()))
                }
                Poll::Ready(Err(join)) if join.is_panic() => {
                    let payload = join.into_panic();
                    Poll::Ready(Err(Panicked::from_payload("task", this.name.clone(), payload).into()))
                }
                // Cancelled by the scope, or aborted.
                Poll::Ready(Ok(None) | Err(_)) => Poll::Ready(Err(Cancelled::new(this.name.clone()).into())),
            },
        }
    }
}
