//! The settings, observers and counters every compartment of one layer shares.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::__private::{Counter, Gauge, Histogram};
use palisade_core::event::EventBus;
use palisade_core::rejection::{BulkheadFull, BulkheadFullReason, KeySetFull};
use palisade_core::WhenFull;

use crate::config::BulkheadConfig;
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
    pub(crate) retry_after: Option<Duration>,
    /// Shed calls while the inner service is not ready (tower's `LoadShed`).
    pub(crate) shed_when_inner_not_ready: bool,
    pub(crate) events: EventBus<BulkheadEvent>,
    pub(crate) metrics: Metrics,
}

/// A wait of `u64::MAX` nanoseconds (584 years) or more: wait with no timer at all, far
/// beyond the ~30-year "never" every deadline saturates to anyway. Reads back as
/// `Duration::MAX`.
pub(super) const UNBOUNDED_WAIT: u64 = u64::MAX;

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
    pub(crate) rejected_key_set_full: Counter,
    pub(crate) wait_time: Histogram,
    pub(crate) queued: Gauge,
    #[cfg(feature = "metrics")]
    pub(crate) in_flight: Gauge,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            waited: Counter::new("palisade_bulkhead_waited_total", name),
            rejected_queue_full: Counter::labeled(
                "palisade_bulkhead_rejected_total",
                name,
                ("reason", "queue_full"),
            ),
            rejected_wait_timed_out: Counter::labeled(
                "palisade_bulkhead_rejected_total",
                name,
                ("reason", "wait_timed_out"),
            ),
            rejected_no_permit: Counter::labeled(
                "palisade_bulkhead_rejected_total",
                name,
                ("reason", "no_permit"),
            ),
            rejected_inner_not_ready: Counter::labeled(
                "palisade_bulkhead_rejected_total",
                name,
                ("reason", "inner_not_ready"),
            ),
            rejected_key_set_full: Counter::labeled(
                "palisade_bulkhead_rejected_total",
                name,
                ("reason", "key_set_full"),
            ),
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

    /// The longest wait in nanoseconds (0: refuse at once; [`UNBOUNDED_WAIT`]: no timer).
    pub(super) fn max_wait_nanos(&self) -> u64 {
        self.max_wait.load(Ordering::Acquire)
    }

    /// How many callers may wait (`usize::MAX`: no bound).
    pub(super) fn max_queue_raw(&self) -> usize {
        self.max_queue.load(Ordering::Acquire)
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
            rejected_inner_not_ready: m.rejected_inner_not_ready.get(),
            rejected_key_set_full: m.rejected_key_set_full.get(),
            mean_wait: m.wait_time.mean(),
            max_wait: m.wait_time.max(),
        }
    }

    /// Counts and publishes a keyed bulkhead's refusal of a new key.
    pub(crate) fn refuse_key_set_full(&self, full: &KeySetFull) {
        self.metrics.rejected_key_set_full.increment();
        crate::event::publish(&self.events, BulkheadEvent::KeySetFull { capacity: full.capacity() });
    }

    pub(crate) fn reject(&self, reason: BulkheadFullReason) -> BulkheadFull {
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
