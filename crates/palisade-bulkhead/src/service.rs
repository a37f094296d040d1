use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tower_service::Service;

use crate::compartment::{Compartment, Permit, Waiting};
use crate::future::ResponseFuture;
use crate::handle::BulkheadHandle;

/// Limits how many calls reach the inner service at once, with a bounded, time-limited
/// FIFO wait for a permit; built by [`BulkheadLayer`](crate::BulkheadLayer).
///
/// `poll_ready` takes a permit (waiting in line if none is free) and then polls the inner
/// service; `call` moves the permit into the response future, which gives it back when
/// the call finishes, fails, panics or is dropped. A service dropped after `poll_ready`
/// without `call` gives its permit back too, and a caller dropped while waiting leaves the
/// queue at once.
///
/// When the caller cannot have a permit (queue full, wait expired, or waiting disabled),
/// `poll_ready` still returns `Ready(Ok(()))` and the next `call` fails at once with
/// [`BulkheadFull`](palisade_core::rejection::BulkheadFull) — like tower's `LoadShed`, so that `Buffer`, balancers and axum, which
/// treat a `poll_ready` error as a dead service, keep working. The service is usable again
/// afterwards: the next `poll_ready` joins the back of the queue.
///
/// # Clone
///
/// Clones share the pool (an `Arc`), but each clone waits and holds its own permit: a
/// clone starts un-ready, without the permit its original may have reserved.
pub struct Bulkhead<S> {
    inner: S,
    compartment: Arc<Compartment>,
    state: State,
}

// Kept small (the pass path moves it around): the rare states are boxed.
enum State {
    Idle,
    Waiting(Box<Waiting>),
    Ready(Permit),
    Rejected(BoxError),
}

impl<S> Bulkhead<S> {
    /// Wraps `inner` with the pool behind `handle`.
    pub fn new(inner: S, handle: &BulkheadHandle) -> Self {
        Self::with_compartment(inner, handle.compartment.clone())
    }

    pub(crate) fn with_compartment(inner: S, compartment: Arc<Compartment>) -> Self {
        Self { inner, compartment, state: State::Idle }
    }

    /// The handle to the pool this service draws from.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle { compartment: self.compartment.clone() }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service (a reserved permit is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Bulkhead<S> {
    /// Waits in line for a permit; `Ready` once the state is `Ready` or `Rejected`.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut waiting = match std::mem::replace(&mut self.state, State::Idle) {
            State::Waiting(w) => Some(w),
            _ => None,
        };
        match self.compartment.poll_acquire(&mut waiting, cx) {
            Poll::Pending => {
                if let Some(w) = waiting {
                    self.state = State::Waiting(w);
                }
                Poll::Pending
            }
            Poll::Ready(Ok(permit)) => {
                self.state = State::Ready(permit);
                Poll::Ready(())
            }
            Poll::Ready(Err(rejection)) => {
                self.state = State::Rejected(rejection.into());
                Poll::Ready(())
            }
        }
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    fn clone(&self) -> Self {
        // A clone has not reserved anything: it starts un-ready.
        Self { inner: self.inner.clone(), compartment: self.compartment.clone(), state: State::Idle }
    }
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Waiting(_) => "waiting",
            State::Ready(_) => "ready",
            State::Rejected(_) => "rejected",
        };
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("compartment", &self.compartment)
            .field("state", &state)
            .finish()
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let State::Idle = self.state {
            // The pass path: a free permit, nobody in line.
            if let Some(permit) = self.compartment.try_acquire() {
                self.state = State::Ready(permit);
            }
        }
        match self.state {
            State::Ready(_) => {}
            State::Rejected(_) => return Poll::Ready(Ok(())),
            State::Idle | State::Waiting(_) => {
                if self.poll_wait(cx).is_pending() {
                    return Poll::Pending;
                }
                if let State::Rejected(_) = self.state {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                // The inner service failed: give the permit back.
                self.state = State::Idle;
                Poll::Ready(Err(e.into()))
            }
        }
    }

    /// # Panics
    ///
    /// When called without a successful `poll_ready` first (as tower's own limits do).
    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Ready(permit) => ResponseFuture::new(self.inner.call(req), permit),
            State::Rejected(rejection) => ResponseFuture::rejected(rejection),
            State::Idle | State::Waiting(_) => {
                panic!("Bulkhead::call without a permit: poll_ready must return Ready(Ok) first")
            }
        }
    }
}
