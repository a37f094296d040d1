//! One pool of permits with its bounded FIFO wait queue: the heart of every bulkhead.

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicUsize as DebtCounter};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicUsize as DebtCounter};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::rejection::{BulkheadFull, BulkheadFullReason, Overloaded};
use tokio::sync::{AcquireError, Semaphore, SemaphorePermit, TryAcquireError};
use tokio::time::{Instant, Sleep};

use crate::config::check_runtime_max;
use crate::event::BulkheadEvent;

mod common;

pub(crate) use self::common::Common;
use self::common::UNBOUNDED_WAIT;

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
///
/// Generic over its free permits only so that loom can check the debt accounting against a
/// model of the semaphore's counter (`tests/loom.rs`); the bulkhead uses tokio's semaphore.
pub(crate) struct Pool<S = Semaphore> {
    semaphore: S,
    /// Held permits to forget on release, owed by a shrink.
    debt: DebtCounter,
}

/// The free permits of a [`Pool`]: what its debt accounting does with them.
pub(crate) trait FreePermits {
    /// Makes `n` permits free (handing them to waiters first).
    fn add_permits(&self, n: usize);
    /// Takes up to `n` free permits away for good; returns how many it took.
    fn forget_permits(&self, n: usize) -> usize;
}

impl FreePermits for Semaphore {
    #[inline]
    fn add_permits(&self, n: usize) {
        Semaphore::add_permits(self, n);
    }

    #[inline]
    fn forget_permits(&self, n: usize) -> usize {
        Semaphore::forget_permits(self, n)
    }
}

impl<S: FreePermits> Pool<S> {
    pub(crate) fn new(semaphore: S) -> Self {
        Self { semaphore, debt: DebtCounter::new(0) }
    }

    #[cfg(loom)]
    pub(crate) fn semaphore(&self) -> &S {
        &self.semaphore
    }

    /// Held permits that will be forgotten instead of given back.
    pub(crate) fn debt(&self) -> usize {
        self.debt.load(Ordering::Acquire)
    }

    /// Gives one held permit back, or forgets it while a shrink is owed.
    #[inline]
    pub(crate) fn release_one(&self) {
        if self.debt.load(Ordering::Acquire) != 0
            && self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok()
        {
            return;
        }
        self.semaphore.add_permits(1);
        // A shrink on another thread may have made a debt after we looked and before the
        // permit went back (it could not take a permit that was not free yet): pay it with
        // the permit if it is still free, rather than leave it free beside the debt for
        // the next caller, however much later it comes.
        //
        // The fence pairs with the one in `shrink` (store-buffering, as Dekker's): either
        // this load sees the shrink's debt, or the shrink's `forget_permits` sees our
        // permit. Without it both may miss (tokio's `add_permits` is only `Release`, so the
        // shrink's CAS does not synchronise with it); loom finds that (`tests/loom.rs`).
        fence(Ordering::SeqCst);
        if self.debt.load(Ordering::Acquire) != 0 {
            self.settle();
        }
    }

    /// Pays the debt with free permits, as far as there are both. Free permits and a debt
    /// never stand side by side once the operations that made them are over.
    fn settle(&self) {
        let owed = self.debt.load(Ordering::Acquire);
        if owed == 0 {
            return;
        }
        let taken = self.semaphore.forget_permits(owed);
        if taken == 0 {
            return;
        }
        let before = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| Some(d - d.min(taken)))
            .unwrap_or(0);
        // Paid meanwhile by releases: what was taken beyond the debt goes back.
        let paid = before.min(taken);
        if taken > paid {
            self.semaphore.add_permits(taken - paid);
        }
    }

    /// `by` fewer permits: free ones at once, held ones as they are released. Callers
    /// serialise resizes.
    pub(crate) fn shrink(&self, by: usize) {
        // Owe the whole shrink first, then pay what free permits can: a release racing
        // with this either sees the debt and pays it, or gives its permit back free and
        // is found here (or settles it itself).
        self.debt.fetch_add(by, Ordering::AcqRel);
        // Pairs with the fence in `release_one`.
        fence(Ordering::SeqCst);
        self.settle();
    }

    /// `by` more permits: first cancels debt (those permits are still held and stay in
    /// use), the rest become free. Callers serialise resizes.
    pub(crate) fn grow(&self, by: usize) {
        let before =
            self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| Some(d - d.min(by))).unwrap_or(0);
        let cancelled = before.min(by);
        self.semaphore.add_permits(by - cancelled);
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

/// A pending semaphore acquisition: `Ok(())` once a permit is taken (already forgotten by
/// the semaphore: the [`Permit`] built from it, or [`Waiting`]'s drop, gives it back).
type AcquireFuture = Pin<Box<dyn Future<Output = Result<(), AcquireError>> + Send>>;

/// A caller's place in the wait queue: the pending semaphore acquisition, its deadline and
/// the queue slot it counts against. Dropping it leaves the queue at once.
pub(crate) struct Waiting {
    // A `Mutex` only so that services holding a `Waiting` are `Sync` (axum needs that); it
    // is only ever reached through `get_mut`, which takes no lock.
    acquisition: Mutex<Acquisition>,
    slot: QueueSlot,
}

struct Acquisition {
    /// `None` once it finished (its permit then belongs to the caller).
    acquire: Option<AcquireFuture>,
    /// `None`: no deadline.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Waiting {
    /// `Ok` once a permit is taken, the refusal's reason once the wait is over without one.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BulkheadFullReason>> {
        let a = self.acquisition.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The permit first, as `timeout_at`: one handed over at the deadline is taken.
        if let Some(acquire) = a.acquire.as_mut() {
            if let Poll::Ready(result) = acquire.as_mut().poll(cx) {
                a.acquire = None;
                // The semaphore is never closed.
                return Poll::Ready(result.map_err(|_closed| BulkheadFullReason::NoPermit));
            }
        }
        match a.deadline.as_mut() {
            Some(deadline) => {
                ready!(deadline.as_mut().poll(cx));
                Poll::Ready(Err(BulkheadFullReason::WaitTimedOut))
            }
            None => Poll::Pending,
        }
    }
}

/// A waiter that leaves the queue — refused at its deadline, or dropped (an outer timeout, a
/// cancelled caller) — may already have been handed a permit by a release it has not seen
/// yet. That permit is held: it goes back through the pool, which pays a shrink's debt
/// first. (Dropped unpolled, tokio's semaphore would take it back itself and hand it to the
/// next waiter or leave it free past the debt: a bulkhead shrunk below the calls in flight
/// then admitted one more.)
impl Drop for Waiting {
    fn drop(&mut self) {
        let a = self.acquisition.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(acquire) = a.acquire.as_mut() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            // Unconstrained: a task out of its coop budget would see `Pending` for a permit
            // already handed over.
            let mut acquire = tokio::task::coop::unconstrained(acquire.as_mut());
            if let Poll::Ready(Ok(())) = Pin::new(&mut acquire).poll(&mut cx) {
                self.slot.compartment.pool.release_one();
            }
        }
    }
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
            pool: Arc::new(Pool::new(Semaphore::new(max))),
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
        let owned = self.max_concurrent().saturating_add(self.pool.debt());
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
            self.limit.store(n, Ordering::Release);
            self.pool.grow(n - old);
        } else if n < old {
            self.limit.store(n, Ordering::Release);
            self.pool.shrink(old - n);
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
        crate::event::publish(&self.common.events, BulkheadEvent::InnerNotReady);
        let shed = Overloaded::new(self.common.name.clone());
        match self.common.retry_after {
            Some(after) => shed.with_retry_after(after),
            None => shed,
        }
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
            let max_wait = self.common.max_wait_nanos();
            if max_wait == 0 {
                return Poll::Ready(Err(self.common.reject(BulkheadFullReason::NoPermit)));
            }
            let before = self.queued.fetch_add(1, Ordering::AcqRel);
            if before >= self.common.max_queue_raw() {
                // Never in line: not a wait.
                let now = self.queued.fetch_sub(1, Ordering::AcqRel) - 1;
                self.common.metrics.queued.set(now as i64);
                return Poll::Ready(Err(self.common.reject(BulkheadFullReason::QueueFull)));
            }
            let since = Instant::now();
            let slot = QueueSlot { compartment: self.clone(), since };
            self.common.metrics.queued.set(before as i64 + 1);
            let pool = self.pool.clone();
            let acquire: AcquireFuture =
                Box::pin(async move { pool.semaphore.acquire().await.map(SemaphorePermit::forget) });
            // A huge wait saturates to "effectively never" instead of overflowing.
            let deadline = (max_wait != UNBOUNDED_WAIT).then(|| {
                let at = palisade_core::time::deadline_after(since, Duration::from_nanos(max_wait));
                Box::pin(tokio::time::sleep_until(at))
            });
            let acquisition = Acquisition { acquire: Some(acquire), deadline };
            *waiting = Some(Box::new(Waiting { acquisition: Mutex::new(acquisition), slot }));
        }
        let Some(w) = waiting.as_mut() else { return Poll::Pending };
        let result = ready!(w.poll(cx));
        let since = w.slot.since;
        // Leave the queue (counting the wait) before anything else can observe it.
        *waiting = None;
        Poll::Ready(match result {
            Ok(()) => Ok(self.granted(Some(since.elapsed()))),
            Err(reason) => Err(self.common.reject(reason)),
        })
    }
}
