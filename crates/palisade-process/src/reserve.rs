//! [`Reservation`]: the slot a `ProcessService` or a `WorkerProcess` reserves in `poll_ready`
//! and spends in `call`, written once for both.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

type AcquireFuture = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send + Sync>>;

/// A permit of a semaphore reserved by `poll_ready`: a free permit costs one atomic
/// operation and no allocation; a wait boxes tokio's acquire future once. Dropping the
/// reservation frees a permit it holds.
#[derive(Default)]
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    acquire: Option<AcquireFuture>,
}

impl Reservation {
    /// Whether a permit is held.
    pub(crate) fn is_ready(&self) -> bool {
        self.permit.is_some()
    }

    /// Holds a permit of `semaphore` once it returns `Ready(Ok(()))`; `Err` when the
    /// semaphore is closed.
    pub(crate) fn poll_reserve(
        &mut self,
        semaphore: &Arc<Semaphore>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), AcquireError>> {
        if self.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        if self.acquire.is_none() {
            // Fast path: a free slot costs one atomic operation, no allocation.
            if let Ok(permit) = semaphore.clone().try_acquire_owned() {
                self.permit = Some(permit);
                return Poll::Ready(Ok(()));
            }
        }
        let acquire = self.acquire.get_or_insert_with(|| Box::pin(semaphore.clone().acquire_owned()));
        let result = std::task::ready!(acquire.as_mut().poll(cx));
        self.acquire = None;
        Poll::Ready(result.map(|permit| self.permit = Some(permit)))
    }

    /// Takes the permit reserved (for `call`).
    pub(crate) fn take(&mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }

    /// Gives up the permit and any wait for one.
    pub(crate) fn clear(&mut self) {
        self.permit = None;
        self.acquire = None;
    }
}
