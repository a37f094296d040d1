//! Response futures of the scope crate's services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::error::Cancelled;
use crate::scope::Scope;

pin_project! {
    /// The response future of [`ScopeService`](crate::ScopeService): the inner future, or
    /// [`Cancelled`] once the scope is cancelled (the inner future is then dropped).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            inner: F,
            // Made on the first `Pending` of the inner future only: a call that completes
            // at once never registers with the cancellation token.
            #[pin]
            cancelled: Option<WaitForCancellationFutureOwned>,
            scope: Scope,
            // Counts the request in flight until the future completes or is dropped.
            token: TaskTrackerToken,
            // The scope's limit, when it has one.
            permit: Option<OwnedSemaphorePermit>,
        },
        Refused { error: Option<BoxError> },
        Done,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        scope: &Scope,
        token: TaskTrackerToken,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self { state: State::Running { inner, cancelled: None, scope: scope.clone(), token, permit } }
    }

    pub(crate) fn refused(error: BoxError) -> Self {
        Self { state: State::Refused { error: Some(error) } }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let out = match this.state.as_mut().project() {
            StateProj::Running { inner, mut cancelled, scope, .. } => {
                // Once registered (the call waited before), cancellation comes first: a
                // cancelled scope stops its work even if the inner future would also be
                // ready. A call that completes on its first poll never reads the token
                // (a lock in tokio-util): the service checked the scope when admitting it.
                let registered_and_cancelled =
                    cancelled.as_mut().as_pin_mut().is_some_and(|c| c.poll(cx).is_ready());
                if registered_and_cancelled {
                    Err(Cancelled::new(scope.inner.name.clone()).into())
                } else {
                    match inner.poll(cx) {
                        Poll::Ready(r) => r.map_err(Into::into),
                        Poll::Pending => {
                            if cancelled.is_none() {
                                cancelled.set(Some(scope.token().cancelled_owned()));
                            }
                            // Registers the wake-up on cancellation.
                            match cancelled.as_pin_mut().map(|c| c.poll(cx)) {
                                Some(Poll::Ready(())) => Err(Cancelled::new(scope.inner.name.clone()).into()),
                                _ => return Poll::Pending,
                            }
                        }
                    }
                }
            }
            StateProj::Refused { error } => {
                Err(error.take().unwrap_or_else(|| Cancelled::new("scope").into()))
            }
            StateProj::Done => Err(Cancelled::new("scope").into()),
        };
        // Drops the inner future and the in-flight token now.
        this.state.set(State::Done);
        Poll::Ready(out)
    }
}
