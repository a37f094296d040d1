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
/// afterwards: the next `poll_ready` joins the back of the queue. A service polled ready
/// again before its `call` takes a permit freed meanwhile instead of answering with the
/// stale refusal (the refusal was counted and published when it was decided).
///
/// # Clone
///
/// Clones share the pool (an `Arc`), but each clone waits and holds its own permit: a
/// clone starts un-ready, without the permit its original may have reserved.
pub struct Bulkhead<S> {
    inner: S,
    compartment: Arc<Compartment>,
    /// The permit reserved by `poll_ready`, taken by `call`.
    permit: Option<Permit>,
    /// Everything that is not the pass path.
    slow: Slow,
}

// The pass path only touches `permit` (as tower's `ConcurrencyLimit` does); the rare states
// live apart and boxed so they cost nothing there.
enum Slow {
    Idle,
    Waiting(Box<Waiting>),
    Rejected(BoxError),
}

impl<S> Bulkhead<S> {
    /// Wraps `inner` with the pool behind `handle`.
    pub fn new(inner: S, handle: &BulkheadHandle) -> Self {
        Self::with_compartment(inner, handle.compartment.clone())
    }

    pub(crate) fn with_compartment(inner: S, compartment: Arc<Compartment>) -> Self {
        Self { inner, compartment, permit: None, slow: Slow::Idle }
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

    /// Waits in line for a permit; `Ready` once there is a permit or a rejection.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut waiting = match std::mem::replace(&mut self.slow, Slow::Idle) {
            Slow::Waiting(w) => Some(w),
            Slow::Idle | Slow::Rejected(_) => None,
        };
        match self.compartment.poll_acquire(&mut waiting, cx) {
            Poll::Pending => {
                if let Some(w) = waiting {
                    self.slow = Slow::Waiting(w);
                }
                Poll::Pending
            }
            Poll::Ready(Ok(permit)) => {
                self.permit = Some(permit);
                Poll::Ready(())
            }
            Poll::Ready(Err(rejection)) => {
                self.slow = Slow::Rejected(rejection.into());
                Poll::Ready(())
            }
        }
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    fn clone(&self) -> Self {
        // A clone has not reserved anything: it starts un-ready.
        Self::with_compartment(self.inner.clone(), self.compartment.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.permit, &self.slow) {
            (Some(_), _) => "ready",
            (None, Slow::Idle) => "idle",
            (None, Slow::Waiting(_)) => "waiting",
            (None, Slow::Rejected(_)) => "rejected",
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

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit.is_none() {
            match self.slow {
                // The pass path: a free permit.
                Slow::Idle => self.permit = self.compartment.try_acquire(),
                // Polled again after a refusal was decided (a balancer's ready cache checks
                // again before it calls): a permit freed meanwhile wins over the stale
                // refusal, which is dropped (it stays counted, as decided then). Without a
                // free permit the refusal stands: no second wait.
                Slow::Rejected(_) => match self.compartment.try_acquire() {
                    Some(permit) => {
                        self.slow = Slow::Idle;
                        self.permit = Some(permit);
                    }
                    None => return Poll::Ready(Ok(())),
                },
                Slow::Waiting(_) => {}
            }
            if self.permit.is_none() {
                if self.poll_wait(cx).is_pending() {
                    return Poll::Pending;
                }
                if self.permit.is_none() {
                    // Refused: `call` answers with the rejection.
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending if self.compartment.common.shed_when_inner_not_ready => {
                // As tower's `LoadShed`: give the permit back, answer ready, refuse in `call`.
                self.permit = None;
                self.slow = Slow::Rejected(self.compartment.shed_inner_not_ready().into());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                // The inner service failed: give the permit back.
                self.permit = None;
                Poll::Ready(Err(e.into()))
            }
        }
    }

    /// Called without a successful `poll_ready` first (a broken caller), it answers
    /// `BulkheadFull` (`NoPermit`) rather than panic, and never calls the inner service it
    /// did not poll.
    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(permit) = self.permit.take() {
            return ResponseFuture::new(self.inner.call(req), permit);
        }
        match std::mem::replace(&mut self.slow, Slow::Idle) {
            Slow::Rejected(rejection) => ResponseFuture::rejected(rejection),
            Slow::Idle | Slow::Waiting(_) => {
                ResponseFuture::rejected(self.compartment.refuse_no_permit().into())
            }
        }
    }
}
