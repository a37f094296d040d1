//! The response future of [`Timeout`](crate::Timeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::rejection::TimedOut;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

use crate::event::TimeoutEvent;
use crate::handle::Shared;

pin_project! {
    /// The future of [`Timeout`](crate::Timeout): the inner call, raced against the timeout.
    /// Dropping it drops (cancels) the inner future.
    ///
    /// The timer is registered only once the inner future has returned `Pending`: a call that
    /// answers on its first poll never touches the timer wheel.
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        #[pin]
        timer: Timer,
        // The deadline, the timeout and the shared state; `None` when this request has no
        // timeout (or once it fired).
        limit: Option<(Instant, Duration, Arc<Shared>)>,
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(future: F, limit: Option<(Instant, Duration, Arc<Shared>)>) -> Self {
        Self { future, timer: Timer::Idle, limit }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("after", &self.limit.as_ref().map(|(_, after, _)| after))
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // As tower's `Timeout`: the inner future first, so an answer that is ready wins.
        if let Poll::Ready(res) = this.future.poll(cx) {
            return Poll::Ready(res.map_err(Into::into));
        }
        let Some((deadline, _, _)) = this.limit else {
            return Poll::Pending; // no timeout for this request
        };
        if let TimerProj::Idle = this.timer.as_mut().project() {
            this.timer.set(Timer::Armed { sleep: sleep_until(*deadline) });
        }
        let TimerProj::Armed { sleep } = this.timer.project() else {
            return Poll::Pending;
        };
        if sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.limit.take() {
            Some((_, after, shared)) => Poll::Ready(Err(timed_out(&shared, after))),
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
