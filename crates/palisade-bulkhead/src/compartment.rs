//! One pool of permits with its bounded FIFO wait queue: the heart of every bulkhead.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::event::EventBus;
use palisade_core::__private::{Counter, Gauge, Histogram};
use palisade_core::rejection::{BulkheadFull, BulkheadFullReason, Overloaded};
use tokio::sync::{AcquireError, Semaphore, SemaphorePermit, TryAcquireError};
use tokio::time::error::Elapsed;
use tokio::time::Instant;

use palisade_core::WhenFull;

use crate::config::{check_runtime_max, BulkheadConfig};
use crate::event::BulkheadEvent;
use crate::handle::BulkheadSnapshot;

/// Settings and observers shared by every compartment of one layer (one for a plain
/// bulkhead, one per key for a keyed bulkhead).
///
/// Aligned to a cache line pair so that threads reading the settings do not share a line
/// with the semaphore's counter (false sharing doubled the pass-path cost on two threads).
#[repr(align(128))]
pub(crate) struct Common {
    pub(crate) name: Arc<str>,
    /// The permits each compartment starts with.
    pub(crate) max_concurrent: usize,
    /// `usize::MAX` when unbounded; changeable through the handle.
    max_queue: AtomicUsize,
    /// The longest wait in nanoseconds: 0 refuses at once, [`UNBOUNDED_WAIT`] waits without a
    /// timer; changeable through the handle.
    max_wait: AtomicU64,
    /// The `Retry-After` every refusal suggests.
    retry_after: Option<Duration>,
    /// Shed calls while the inner service is not ready (tower's `LoadShed`).
    pub(crate) shed_when_inner_not_ready: bool,
    pub(crate) events: EventBus<BulkheadEvent>,
    pub(crate) metrics: Metrics,
}

/// A wait of `u64::MAX` nanoseconds (584 years) or more: wait with no timer at all, far
/// beyond the ~30-year "never" every deadline saturates to anyway. Reads back as
/// `Duration::MAX`.
const UNBOUNDED_WAIT: u64 = u64::MAX;

/// A `WhenFull` as stored: its wait in nanoseconds, saturated to [`UNBOUNDED_WAIT`].
fn wait_nanos(when_full: WhenFull) -> u64 {
    u64::try_from(when_full.max_wait().as_nanos()).unwrap_or(UNBOUNDED_WAIT)
}

/// Written on every admission: kept on lines of its own, away from the read-only settings.
#[repr(align(128))]
pub(crate) struct Metrics {
    pub(crate) waited: Counter,
    pub(crate) rejected_queue_full: Counter,
    pub(crate) rejected_wait_timed_out: Counter,
    pub(crate) rejected_no_permit: Counter,
    pub(crate) rejected_inner_not_ready: Counter,
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
            rejected_inner_not_ready: Counter::new("palisade_bulkhead_rejected_inner_not_ready_total", name),
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
            .field("max_queue", &self.max_queue())
            .field("when_full", &self.when_full())
            .finish_non_exhaustive()
    }
}

impl Common {
    pub(crate) fn new(name: Arc<str>, config: &BulkheadConfig, events: EventBus<BulkheadEvent>) -> Self {
        let metrics = Metrics::new(&name);
        Self {
            name,
            max_concurrent: config.max_concurrent,
            max_queue: AtomicUsize::new(config.max_queue.unwrap_or(usize::MAX)),
            max_wait: AtomicU64::new(wait_nanos(config.when_full)),
            retry_after: config.retry_after,
            shed_when_inner_not_ready: config.shed_when_inner_not_ready,
            events,
            metrics,
        }
    }

    /// How many callers may wait (`None`: no bound).
    pub(crate) fn max_queue(&self) -> Option<usize> {
        Some(self.max_queue.load(Ordering::Acquire)).filter(|&n| n != usize::MAX)
    }

    pub(crate) fn set_max_queue(&self, n: Option<usize>) {
        self.max_queue.store(n.unwrap_or(usize::MAX), Ordering::Release);
    }

    /// What a caller does when every permit is taken.
    pub(crate) fn when_full(&self) -> WhenFull {
        match self.max_wait.load(Ordering::Acquire) {
            0 => WhenFull::Refuse,
            UNBOUNDED_WAIT => WhenFull::wait(Duration::MAX),
            n => WhenFull::wait(Duration::from_nanos(n)),
        }
    }

    pub(crate) fn set_when_full(&self, when_full: WhenFull) {
        self.max_wait.store(wait_nanos(when_full), Ordering::Release);
    }

    /// The numbers of one compartment (or of all keys, summed) with this layer's counters.
    pub(crate) fn snapshot(
        &self,
        max_concurrent: usize,
        in_flight: usize,
        queued: usize,
    ) -> BulkheadSnapshot {
        let m = &self.metrics;
        BulkheadSnapshot {
            max_concurrent,
            in_flight,
            queued,
            waited: m.waited.get(),
            rejected_queue_full: m.rejected_queue_full.get(),
            rejected_wait_timed_out: m.rejected_wait_timed_out.get(),
            rejected_no_permit: m.rejected_no_permit.get(),
            mean_wait: m.wait_time.mean(),
            max_wait: m.wait_time.max(),
        }
    }

    fn reject(&self, reason: BulkheadFullReason) -> BulkheadFull {
        match reason {
            BulkheadFullReason::QueueFull => self.metrics.rejected_queue_full.increment(),
            BulkheadFullReason::WaitTimedOut => self.metrics.rejected_wait_timed_out.increment(),
            _ => self.metrics.rejected_no_permit.increment(),
        }
        crate::event::publish(&self.events, BulkheadEvent::Rejected { reason });
        let full = BulkheadFull::new(self.name.clone(), reason);
        match self.retry_after {
            Some(after) => full.with_retry_after(after),
            None => full,
        }
    }
}

/// A pool of `max_concurrent` permits and the count of callers waiting for one.
///
/// The number of permits can change at run time ([`set_max_concurrent`](Self::set_max_concurrent)).
/// Invariant: permits available in the semaphore + permits held = `limit + debt`, where
/// `debt` counts held permits that are forgotten instead of given back when they are
/// released (a shrink below the number in flight).
#[repr(align(128))]
pub(crate) struct Compartment {
    pub(crate) common: Arc<Common>,
    pool: Arc<Pool>,
    queued: AtomicUsize,
    /// The number of permits now.
    limit: AtomicUsize,
    /// Serialises resizes.
    resize: Mutex<()>,
}

/// The semaphore and the shrink debt: what a [`Permit`] needs to give itself back.
///
/// Kept small and in an `Arc` of its own (as tower's `ConcurrencyLimit` keeps an
/// `Arc<Semaphore>`), so that the reference count a permit touches sits next to the permit
/// counter: one hot cache line on the pass path, not two.
struct Pool {
    semaphore: Semaphore,
    /// Held permits to forget on release, owed by a shrink.
    debt: AtomicUsize,
}

impl Pool {
    /// Gives one held permit back, or forgets it while a shrink is owed.
    #[inline]
    fn release_one(&self) {
        if self.debt.load(Ordering::Acquire) != 0
            && self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok()
        {
            return;
        }
        self.semaphore.add_permits(1);
    }
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

/// A permit held by one call; dropping it gives it back (or pays a shrink's debt).
pub(crate) struct Permit {
    pool: Arc<Pool>,
    #[cfg(feature = "metrics")]
    compartment: Arc<Compartment>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.pool.release_one();
        #[cfg(feature = "metrics")]
        {
            let c = &self.compartment;
            c.common.metrics.in_flight.set(c.in_flight() as i64);
        }
    }
}

/// A pending acquisition: `Ok(Ok(()))` once a permit is taken (already forgotten by the
/// semaphore: the [`Permit`] built from it gives it back).
type AcquireFuture = Pin<Box<dyn Future<Output = Result<Result<(), AcquireError>, Elapsed>> + Send>>;

/// A caller's place in the wait queue: the pending semaphore acquisition (with its deadline)
/// and the queue slot it counts against. Dropping it leaves the queue at once.
pub(crate) struct Waiting {
    // A `Mutex` only so that services holding a `Waiting` are `Sync` (axum needs that); it
    // is only ever reached through `get_mut`, which takes no lock.
    acquire: Mutex<AcquireFuture>,
    slot: QueueSlot,
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting").field("since", &self.slot.since).finish_non_exhaustive()
    }
}

/// A caller's place in the wait queue. Leaving it — with a permit, refused at the end of
/// its wait, or dropped while waiting (an outer timeout) — counts the caller in
/// `palisade_bulkhead_waited_total` and its wait in `palisade_bulkhead_wait_seconds`: every
/// wait is measured, not only the ones that ended with a permit.
struct QueueSlot {
    compartment: Arc<Compartment>,
    since: Instant,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        let c = &self.compartment;
        let now = c.queued.fetch_sub(1, Ordering::AcqRel) - 1;
        let m = &c.common.metrics;
        m.queued.set(now as i64);
        m.waited.increment();
        m.wait_time.record(self.since.elapsed());
    }
}

impl Compartment {
    pub(crate) fn new(common: Arc<Common>) -> Self {
        // `max_concurrent` was checked against `Semaphore::MAX_PERMITS` by the builder.
        let max = common.max_concurrent.min(Semaphore::MAX_PERMITS);
        Self {
            common,
            pool: Arc::new(Pool { semaphore: Semaphore::new(max), debt: AtomicUsize::new(0) }),
            queued: AtomicUsize::new(0),
            limit: AtomicUsize::new(max),
            resize: Mutex::new(()),
        }
    }

    /// The number of permits now.
    pub(crate) fn max_concurrent(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    pub(crate) fn in_flight(&self) -> usize {
        let owned = self.max_concurrent().saturating_add(self.pool.debt.load(Ordering::Acquire));
        owned.saturating_sub(self.pool.semaphore.available_permits())
    }

    /// Changes the number of permits. Growing hands the new permits to waiters in order;
    /// shrinking takes free permits away at once and the rest as calls in flight finish, so
    /// no call loses its permit and none is admitted until the count is below `n`.
    /// Zero is allowed here (not at build time): a bulkhead that admits nothing until it is
    /// raised again, as Resilience4j's `changeConfig` with `maxConcurrentCalls` 0.
    pub(crate) fn set_max_concurrent(&self, n: usize) -> Result<(), ConfigError> {
        check_runtime_max(n)?;
        let _guard = palisade_core::sync::lock(&self.resize);
        let old = self.limit.load(Ordering::Acquire);
        if n > old {
            let grow = n - old;
            // Cancel debt first: those permits are still held and stay in use.
            let before = self
                .pool
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| Some(d - d.min(grow)))
                .unwrap_or(0);
            let cancelled = before.min(grow);
            self.limit.store(n, Ordering::Release);
            self.pool.semaphore.add_permits(grow - cancelled);
        } else if n < old {
            let shrink = old - n;
            self.limit.store(n, Ordering::Release);
            let taken = self.pool.semaphore.forget_permits(shrink);
            self.pool.debt.fetch_add(shrink - taken, Ordering::AcqRel);
        }
        #[cfg(feature = "metrics")]
        self.common.metrics.in_flight.set(self.in_flight() as i64);
        Ok(())
    }

    pub(crate) fn available(&self) -> usize {
        self.pool.semaphore.available_permits()
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    #[inline]
    /// Wraps a permit; `waited` is `Some` when it came through the queue.
    fn permit(self: &Arc<Self>, permit: SemaphorePermit<'_>, waited: Option<Duration>) -> Permit {
        // From here the `Permit` owns it (and gives it back on drop).
        permit.forget();
        self.granted(waited)
    }

    /// Wraps a permit already taken from (and forgotten by) the semaphore.
    #[inline]
    fn granted(self: &Arc<Self>, waited: Option<Duration>) -> Permit {
        let common = &self.common;
        // Nothing is counted on the pass path: a shared counter there costs more than the
        // semaphore itself on several threads. A wait was counted when it left the queue.
        // The permit exists before anything runs user code, so a panicking listener
        // cannot lose it.
        let permit = Permit {
            pool: self.pool.clone(),
            #[cfg(feature = "metrics")]
            compartment: self.clone(),
        };
        if common.events.is_observed() {
            crate::event::publish(
                &common.events,
                BulkheadEvent::Acquired { wait: waited.unwrap_or_default() },
            );
        }
        #[cfg(feature = "metrics")]
        common.metrics.in_flight.set(self.in_flight() as i64);
        permit
    }

    /// The refusal for a call whose inner service was not ready (load shedding).
    pub(crate) fn shed_inner_not_ready(&self) -> Overloaded {
        self.common.metrics.rejected_inner_not_ready.increment();
        Overloaded::new(self.common.name.clone())
    }

    /// The refusal for a call that found no permit and may not wait.
    pub(crate) fn refuse_no_permit(&self) -> BulkheadFull {
        self.common.reject(BulkheadFullReason::NoPermit)
    }

    /// A permit if one is free now and nobody waits (the pass path).
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        match self.pool.semaphore.try_acquire() {
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
            match self.pool.semaphore.try_acquire() {
                Ok(permit) => return Poll::Ready(Ok(self.permit(permit, None))),
                Err(TryAcquireError::NoPermits) => {}
                // The semaphore is never closed.
                Err(TryAcquireError::Closed) => {
                    return Poll::Ready(Err(self.common.reject(BulkheadFullReason::NoPermit)))
                }
            }
            let max_wait = self.common.max_wait.load(Ordering::Acquire);
            if max_wait == 0 {
                return Poll::Ready(Err(self.common.reject(BulkheadFullReason::NoPermit)));
            }
            let before = self.queued.fetch_add(1, Ordering::AcqRel);
            if before >= self.common.max_queue.load(Ordering::Acquire) {
                // Never in line: not a wait.
                let now = self.queued.fetch_sub(1, Ordering::AcqRel) - 1;
                self.common.metrics.queued.set(now as i64);
                return Poll::Ready(Err(self.common.reject(BulkheadFullReason::QueueFull)));
            }
            let since = Instant::now();
            let slot = QueueSlot { compartment: self.clone(), since };
            self.common.metrics.queued.set(before as i64 + 1);
            let pool = self.pool.clone();
            let acquire = async move { pool.semaphore.acquire().await.map(SemaphorePermit::forget) };
            let acquire: AcquireFuture = if max_wait == UNBOUNDED_WAIT {
                Box::pin(async move { Ok(acquire.await) })
            } else {
                // A huge wait saturates to "effectively never" instead of overflowing.
                let deadline = palisade_core::time::deadline_after(since, Duration::from_nanos(max_wait));
                Box::pin(tokio::time::timeout_at(deadline, acquire))
            };
            *waiting = Some(Box::new(Waiting { acquire: Mutex::new(acquire), slot }));
        }
        let Some(w) = waiting.as_mut() else { return Poll::Pending };
        let acquire = w.acquire.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = ready!(acquire.as_mut().poll(cx));
        let since = w.slot.since;
        // Leave the queue (counting the wait) before anything else can observe it.
        drop(waiting.take().map(|w| w.slot));
        Poll::Ready(match result {
            Ok(Ok(())) => Ok(self.granted(Some(since.elapsed()))),
            Ok(Err(_closed)) => Err(self.common.reject(BulkheadFullReason::NoPermit)),
            Err(_elapsed) => Err(self.common.reject(BulkheadFullReason::WaitTimedOut)),
        })
    }
}
