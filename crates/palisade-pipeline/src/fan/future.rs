//! The response future of a fan-out and the calls it tags with their branch index.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use palisade_core::BoxError;
use pin_project_lite::pin_project;

use crate::error::FanOutError;

use super::strategy::Merge;

pin_project! {
    /// The response future of [`FanOut`](crate::fan::FanOut) and [`Split`](crate::fan::Split).
    pub struct FanOutFuture<F, M, R>
    where
        M: Merge<R>,
    {
        calls: FuturesUnordered<Indexed<F>>,
        merge: M,
        state: Option<M::State>,
        decided: Option<Result<M::Output, FanOutError>>,
    }
}

impl<F, M: Merge<R>, R> FanOutFuture<F, M, R> {
    pub(crate) fn new(
        calls: FuturesUnordered<Indexed<F>>,
        merge: M,
        state: M::State,
        decided: Option<Result<M::Output, FanOutError>>,
    ) -> Self {
        Self { calls, merge, state: Some(state), decided }
    }
}

impl<F, M: Merge<R>, R> fmt::Debug for FanOutFuture<F, M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOutFuture").field("running", &self.calls.len()).finish_non_exhaustive()
    }
}

impl<F, M, R, E> Future for FanOutFuture<F, M, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
    M: Merge<R>,
{
    type Output = Result<M::Output, FanOutError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(decided) = this.decided.take() {
            return Poll::Ready(decided);
        }
        loop {
            match std::task::ready!(this.calls.poll_next_unpin(cx)) {
                Some((index, result)) => {
                    if let Some(state) = this.state.as_mut() {
                        if let Some(decided) = this.merge.push(state, index, result.map_err(Into::into)) {
                            this.state.take();
                            return Poll::Ready(decided);
                        }
                    }
                }
                None => {
                    return Poll::Ready(match this.state.take() {
                        Some(state) => this.merge.finish(state),
                        None => Err(FanOutError::new(vec![(0, "fan-out polled after completion".into())], 0)),
                    });
                }
            }
        }
    }
}

pin_project! {
    /// A call tagged with its branch index.
    #[derive(Debug)]
    pub struct Indexed<F> {
        index: usize,
        #[pin]
        fut: F,
    }
}

impl<F> Indexed<F> {
    pub(crate) fn new(index: usize, fut: F) -> Self {
        Self { index, fut }
    }
}

impl<F: Future> Future for Indexed<F> {
    type Output = (usize, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.fut.poll(cx));
        Poll::Ready((*this.index, out))
    }
}
