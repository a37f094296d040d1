//! The response future of [`Timeout`](crate::Timeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::rejection::TimedOut;
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Sleep};

use crate::event::TimeoutEvent;
use crate::handle::Shared;

pin_project! {
    /// The future of [`Timeout`](crate::Timeout): the inner call, raced against the timeout.
    /// Dropping it drops (cancels) the inner future.
    ///
    /// The clock is read and the timer registered only once the inner future has returned
    /// `Pending`: a call that answers on its first poll reads no clock and touches no timer.
    /// The timer is boxed, so the future that `call` returns stays the inner future plus two
    /// words and the timeout.
    pub struct ResponseFuture<Fut> {
        #[pin]
        future: Fut,
        timer: Option<Pin<Box<Sleep>>>,
        // The timeout and the shared state; `None` when this request has no timeout (or
        // once it fired).
        limit: Option<(Duration, Arc<Shared>)>,
    }
}

impl<Fut> ResponseFuture<Fut> {
    #[inline]
    pub(crate) fn new(future: Fut, limit: Option<(Duration, Arc<Shared>)>) -> Self {
        Self { future, timer: None, limit }
    }
}

impl<Fut> fmt::Debug for ResponseFuture<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("after", &self.limit.as_ref().map(|(after, _)| after))
            .field("armed", &self.timer.is_some())
            .finish_non_exhaustive()
    }
}

impl<Fut, T, E> Future for ResponseFuture<Fut>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // As tower's `Timeout`: the inner future first, so an answer that is ready wins.
        if let Poll::Ready(res) = this.future.poll(cx) {
            return Poll::Ready(res.map_err(Into::into));
        }
        let Some((after, _)) = this.limit else {
            return Poll::Pending; // no timeout for this request
        };
        let timer = this.timer.get_or_insert_with(|| Box::pin(sleep_until(deadline_from_now(*after))));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.limit.take() {
            Some((after, shared)) => Poll::Ready(Err(timed_out(&shared, after))),
            None => Poll::Pending,
        }
    }
}

/// Counts and reports a timeout; the error the caller gets.
#[cold]
#[inline(never)]
fn timed_out(shared: &Shared, after: Duration) -> BoxError {
    shared.timed_out.increment();
    shared.bus.publish(TimeoutEvent::TimedOut { after });
    TimedOut::new(shared.name.clone(), after).into()
}
