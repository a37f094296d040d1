//! Capacity held by a call, and a caller's place in the backlog.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::rejection::Overloaded;
use tokio::time::Instant;

use super::{Limiter, Waiter};
use crate::adaptive::algorithm::Sample;

/// Capacity held by one call; dropping it without [`complete`](Self::complete) gives it back
/// without a sample (a cancelled call says nothing about the service).
pub(crate) struct AdaptivePermit {
    limiter: Arc<Limiter>,
    partition: Option<usize>,
    in_flight: usize,
    start: Instant,
    released: bool,
}

impl fmt::Debug for AdaptivePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

impl AdaptivePermit {
    /// Capacity taken for a call of `partition` with `in_flight` calls in flight.
    pub(super) fn new(limiter: Arc<Limiter>, partition: Option<usize>, in_flight: usize) -> Self {
        Self { limiter, partition, in_flight, start: Instant::now(), released: false }
    }

    /// Gives the capacity back with the call's outcome: `Some(dropped)` feeds a sample of
    /// latency `rtt` (measured once, by the caller that also judged the call), `None`
    /// (ignored) does not.
    pub(crate) fn complete(mut self, dropped: Option<bool>, rtt: Duration) {
        self.released = true;
        let sample = dropped.map(|d| Sample::new(rtt, self.in_flight, d));
        self.limiter.release(self.partition, sample);
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for AdaptivePermit {
    fn drop(&mut self) {
        if !self.released {
            self.limiter.release(self.partition, None);
        }
    }
}

/// A caller's place in the backlog; dropping it leaves the backlog (or, if a permit was
/// already handed to it, gives that permit to the next caller).
pub(crate) struct BacklogSlot {
    limiter: Arc<Limiter>,
    waiter: Arc<Waiter>,
    partition: Option<usize>,
    since: Instant,
    done: bool,
}

impl fmt::Debug for BacklogSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BacklogSlot").field("waiter", &self.waiter).finish_non_exhaustive()
    }
}

impl BacklogSlot {
    /// `waiter`'s place, queued now.
    pub(super) fn new(limiter: Arc<Limiter>, waiter: Arc<Waiter>, partition: Option<usize>) -> Self {
        Self { limiter, waiter, partition, since: Instant::now(), done: false }
    }

    pub(crate) fn waiter(&self) -> &Waiter {
        &self.waiter
    }

    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// The permit handed over to this caller, if it has been.
    pub(crate) fn try_take(&mut self) -> Option<AdaptivePermit> {
        if !self.waiter.is_granted() {
            return None;
        }
        self.done = true;
        let limiter = &self.limiter;
        let in_flight = self.waiter.in_flight.load(Ordering::Acquire);
        limiter.admitted(self.since.elapsed());
        Some(AdaptivePermit::new(limiter.clone(), self.partition, in_flight))
    }

    /// Gives up waiting: the permit if it was handed over meanwhile, otherwise the rejection.
    pub(crate) fn give_up(mut self) -> Result<AdaptivePermit, Overloaded> {
        let removed = {
            let mut state = self.limiter.lock();
            let before = state.backlog.len();
            state.backlog.retain(|e| !Arc::ptr_eq(&e.waiter, &self.waiter));
            let removed = state.backlog.len() != before;
            self.limiter.metrics.backlog.set(state.backlog.len() as i64);
            removed
        };
        if removed {
            self.done = true;
            Err(self.limiter.reject(self.partition))
        } else {
            // Granted between the timer firing and the lock: take the permit.
            self.try_take().ok_or_else(|| self.limiter.reject(self.partition))
        }
    }
}

impl Drop for BacklogSlot {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let granted = {
            let mut state = self.limiter.lock();
            let before = state.backlog.len();
            state.backlog.retain(|e| !Arc::ptr_eq(&e.waiter, &self.waiter));
            self.limiter.metrics.backlog.set(state.backlog.len() as i64);
            state.backlog.len() == before
        };
        if granted {
            // A permit was handed to us and nobody will use it: pass it on.
            self.limiter.release(self.partition, None);
        }
    }
}
