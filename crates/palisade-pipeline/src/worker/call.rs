//! A call of a stage in flight: where it waits ([`InFlight`]), how it is stored ([`Slot`]),
//! and the future that runs it and catches its panics ([`Call`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::error::StageError;

/// Calls in flight: in input order or as they complete.
pub(super) enum InFlight<F: Future> {
    Ordered(FuturesOrdered<F>),
    Unordered(FuturesUnordered<F>),
}

impl<F: Future> InFlight<F> {
    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Ordered(q) => q.len(),
            Self::Unordered(q) => q.len(),
        }
    }

    #[inline]
    pub(super) fn push(&mut self, f: F) {
        match self {
            Self::Ordered(q) => q.push_back(f),
            Self::Unordered(q) => q.push(f),
        }
    }

    #[inline]
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        if self.len() == 0 {
            return Poll::Ready(None);
        }
        match self {
            Self::Ordered(q) => Pin::new(q).poll_next(cx),
            Self::Unordered(q) => Pin::new(q).poll_next(cx),
        }
    }
}

pin_project! {
    #[project = CallProj]
    pub(super) enum Call<F, T> {
        Running { #[pin] fut: F, seq: u64, kept: Option<T>, start: Instant },
        Pass { err: Option<StageError> },
    }
}

pin_project! {
    /// A call in flight: boxed if it was polled once already (it cannot move any more),
    /// in place otherwise.
    #[project = SlotProj]
    pub(super) enum Slot<F, T> {
        Boxed { fut: Pin<Box<Call<F, T>>> },
        Inline { #[pin] fut: Call<F, T> },
    }
}

impl<F, R, E, T> Future for Slot<F, T>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Done<R, T>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SlotProj::Boxed { fut } => fut.as_mut().poll(cx),
            SlotProj::Inline { fut } => fut.poll(cx),
        }
    }
}

pub(super) enum Done<R, T> {
    Finished { seq: u64, result: Result<R, BoxError>, kept: Option<T>, start: Instant },
    Pass(Option<StageError>),
}

impl<F, R, E, T> Future for Call<F, T>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Done<R, T>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (seq, kept, start, result) = match self.as_mut().project() {
            CallProj::Running { fut, seq, kept, start } => {
                // The response future is user code: a panic is this item's error.
                let result = match crate::panic::catch("response", || fut.poll(cx)) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(result)) => result.map_err(Into::into),
                    Err(panicked) => Err(panicked),
                };
                (*seq, kept.take(), *start, result)
            }
            CallProj::Pass { err } => return Poll::Ready(Done::Pass(err.take())),
        };
        // Dropping the finished future runs user code too: drop it here, where a panic of its
        // `Drop` still fails this item, rather than wherever the slot happens to be dropped.
        let result = match crate::panic::catch("drop", || self.set(Call::Pass { err: None })) {
            Ok(()) => result,
            Err(panicked) => {
                if let Err(e) = crate::panic::catch("drop", move || drop(result)) {
                    tracing::warn!(target: "palisade", error = %e, "dropping a stage response panicked");
                }
                Err(panicked)
            }
        };
        Poll::Ready(Done::Finished { seq, result, kept, start })
    }
}
