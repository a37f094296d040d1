//! One pool of permits with its bounded FIFO wait queue: the heart of every bulkhead.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::event::EventBus;
use palisade_core::metric::{Counter, Gauge, Histogram};
use palisade_core::rejection::{BulkheadFull, BulkheadFullReason};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::error::Elapsed;
use tokio::time::Instant;

use crate::event::BulkheadEvent;

/// Settings and observers shared by every compartment of one layer (one for a plain
/// bulkhead, one per key for a keyed bulkhead).
///
/// Aligned to a cache line pair so that threads reading the settings do not share a line
/// with the semaphore's counter (false sharing doubled the pass-path cost on two threads).
#[repr(align(128))]
pub(crate) struct Common {
    pub(crate) name: Arc<str>,
    pub(crate) max_concurrent: usize,
    /// `usize::MAX` when unbounded.
    pub(crate) max_queue: usize,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) events: EventBus<BulkheadEvent>,
    pub(crate) metrics: Metrics,
}

/// Written on every admission: kept on lines of its own, away from the read-only settings.
#[repr(align(128))]
pub(crate) struct Metrics {
    pub(crate) waited: Counter,
    pub(crate) rejected_queue_full: Counter,
    pub(crate) rejected_wait_timed_out: Counter,
    pub(crate) rejected_no_permit: Counter,
    pub(crate) wait_time: Histogram,
    pub(crate) queued: Gauge,
    #[cfg(feature = "metrics")]
    pub(crate) in_flight: Gauge,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            waited: Counter::new("palisade_bulkhead_waited_total", name),
            rejected_queue_full: Counter::new("palisade_bulkhead_rejected_queue_full_total", name),
            rejected_wait_timed_out: Counter::new("palisade_bulkhead_rejected_wait_timed_out_total", name),
            rejected_no_permit: Counter::new("palisade_bulkhead_rejected_no_permit_total", name),
            wait_time: Histogram::new("palisade_bulkhead_wait_seconds", name),
            queued: Gauge::new("palisade_bulkhead_queued", name),
            #[cfg(feature = "metrics")]
            in_flight: Gauge::new("palisade_bulkhead_in_flight", name),
        }
    }
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Common")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl Common {
    fn reject(&self, reason: BulkheadFullReason) -> BulkheadFull {
        match reason {
            BulkheadFullReason::QueueFull => self.metrics.rejected_queue_full.increment(),
            BulkheadFullReason::WaitTimedOut => self.metrics.rejected_wait_timed_out.increment(),
            _ => self.metrics.rejected_no_permit.increment(),
        }
        self.events.publish(BulkheadEvent::Rejected { reason });
        BulkheadFull::new(self.name.clone(), reason)
    }
}

/// A pool of `max_concurrent` permits and the count of callers waiting for one.
#[repr(align(128))]
pub(crate) struct Compartment {
    pub(crate) common: Arc<Common>,
    semaphore: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl fmt::Debug for Compartment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compartment")
            .field("name", &self.common.name)
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

/// A permit held by one call; dropping it gives it back.
pub(crate) struct Permit {
    _permit: OwnedSemaphorePermit,
    #[cfg(feature = "metrics")]
    compartment: Arc<Compartment>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl Drop for Permit {
    fn drop(&mut self) {
        // The semaphore permit is released after this runs; count it as gone already.
        let c = &self.compartment;
        c.common.metrics.in_flight.set(c.in_flight().saturating_sub(1) as i64);
    }
}

type AcquireFuture =
    Pin<Box<dyn Future<Output = Result<Result<OwnedSemaphorePermit, AcquireError>, Elapsed>> + Send>>;

/// A caller's place in the wait queue: the pending semaphore acquisition (with its deadline)
/// and the queue slot it counts against. Dropping it leaves the queue at once.
pub(crate) struct Waiting {
    // A `Mutex` only so that services holding a `Waiting` are `Sync` (axum needs that); it
    // is only ever reached through `get_mut`, which takes no lock.
    acquire: Mutex<AcquireFuture>,
    since: Instant,
    slot: QueueSlot,
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting").field("since", &self.since).finish_non_exhaustive()
    }
}

struct QueueSlot {
    compartment: Arc<Compartment>,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        let c = &self.compartment;
        let now = c.queued.fetch_sub(1, Ordering::AcqRel) - 1;
        c.common.metrics.queued.set(now as i64);
    }
}

impl Compartment {
    pub(crate) fn new(common: Arc<Common>) -> Self {
        let semaphore = Arc::new(Semaphore::new(common.max_concurrent));
        Self { common, semaphore, queued: AtomicUsize::new(0) }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.common.max_concurrent.saturating_sub(self.semaphore.available_permits())
    }

    pub(crate) fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    #[inline]
    /// Wraps a permit; `waited` is `Some` when it came through the queue.
    fn permit(self: &Arc<Self>, permit: OwnedSemaphorePermit, waited: Option<Duration>) -> Permit {
        let common = &self.common;
        // Nothing is counted on the pass path: a shared counter there costs more than the
        // semaphore itself on several threads.
        if let Some(wait) = waited {
            common.metrics.waited.increment();
            common.metrics.wait_time.record(wait);
        }
        if common.events.is_observed() {
            common.events.publish(BulkheadEvent::Acquired { wait: waited.unwrap_or_default() });
        }
        #[cfg(feature = "metrics")]
        common.metrics.in_flight.set(self.in_flight() as i64);
        Permit {
            _permit: permit,
            #[cfg(feature = "metrics")]
            compartment: self.clone(),
        }
    }

    /// The refusal for a call that found no permit and may not wait.
    pub(crate) fn refuse_no_permit(&self) -> BulkheadFull {
        self.common.reject(BulkheadFullReason::NoPermit)
    }

    /// A permit if one is free now and nobody waits (the pass path).
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Some(self.permit(permit, None)),
            Err(_) => None,
        }
    }

    /// Gets a permit, joining (or staying in) the wait queue through `waiting`.
    ///
    /// `Ready(Err)` is a refusal: queue full, wait expired, or no permit with waiting
    /// disabled. `waiting` is `None` again whenever this returns `Ready`.
    pub(crate) fn poll_acquire(
        self: &Arc<Self>,
        waiting: &mut Option<Box<Waiting>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Permit, BulkheadFull>> {
        if waiting.is_none() {
            match self.semaphore.clone().try_acquire_owned() {
                Ok(permit) => return Poll::Ready(Ok(self.permit(permit, None))),
                Err(TryAcquireError::NoPermits) => {}
                // The semaphore is never closed.
                Err(TryAcquireError::Closed) => {
                    return Poll::Ready(Err(self.common.reject(BulkheadFullReason::NoPermit)))
                }
            }
            if self.common.max_wait == Some(Duration::ZERO) {
                return Poll::Ready(Err(self.common.reject(BulkheadFullReason::NoPermit)));
            }
            let before = self.queued.fetch_add(1, Ordering::AcqRel);
            let slot = QueueSlot { compartment: self.clone() };
            if before >= self.common.max_queue {
                drop(slot);
                return Poll::Ready(Err(self.common.reject(BulkheadFullReason::QueueFull)));
            }
            self.common.metrics.queued.set(before as i64 + 1);
            let semaphore = self.semaphore.clone();
            let acquire: AcquireFuture = match self.common.max_wait {
                Some(max_wait) => Box::pin(tokio::time::timeout(max_wait, semaphore.acquire_owned())),
                None => Box::pin(async move { Ok(semaphore.acquire_owned().await) }),
            };
            *waiting = Some(Box::new(Waiting { acquire: Mutex::new(acquire), since: Instant::now(), slot }));
        }
        let Some(w) = waiting.as_mut() else { return Poll::Pending };
        let acquire = w.acquire.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = ready!(acquire.as_mut().poll(cx));
        let since = w.since;
        // Leave the queue before anything else can observe it.
        drop(waiting.take().map(|w| w.slot));
        Poll::Ready(match result {
            Ok(Ok(permit)) => Ok(self.permit(permit, Some(since.elapsed()))),
            Ok(Err(_closed)) => Err(self.common.reject(BulkheadFullReason::NoPermit)),
            Err(_elapsed) => Err(self.common.reject(BulkheadFullReason::WaitTimedOut)),
        })
    }
}
