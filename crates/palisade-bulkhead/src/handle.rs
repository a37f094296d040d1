//! The handle to a bulkhead's shared pool and its snapshot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::WhenFull;

use crate::compartment::Compartment;
use crate::event::BulkheadEvent;
use crate::layer::BulkheadLayer;

/// A cheap, cloneable handle to one bulkhead's pool of permits.
///
/// Read its state ([`snapshot`](Self::snapshot)), listen to its events ([`on_event`](Self::on_event)), build more
/// layers drawing from the same pool ([`layer`](Self::layer)) — one pool for a group of
/// endpoints — and change its limits at run time (Resilience4j's `changeConfig`):
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::BulkheadLayer;
/// use palisade_core::WhenFull;
///
/// let layer = BulkheadLayer::new(10);
/// let handle = layer.handle();
/// handle.set_max_concurrent(4).unwrap();
/// handle.set_when_full(WhenFull::wait(Duration::from_millis(50)));
/// assert_eq!(handle.max_concurrent(), 4);
/// assert!(handle.set_max_concurrent(usize::MAX).is_err());
/// ```
#[derive(Clone)]
pub struct BulkheadHandle {
    pub(crate) compartment: Arc<Compartment>,
}

impl fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadHandle").field("compartment", &self.compartment).finish()
    }
}

impl BulkheadHandle {
    /// A layer whose services draw from this pool.
    pub fn layer(&self) -> BulkheadLayer {
        BulkheadLayer::from_handle(self)
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.compartment.common.name
    }

    /// The number of permits now.
    pub fn max_concurrent(&self) -> usize {
        self.compartment.max_concurrent()
    }

    /// Changes the number of permits now, for every service drawing from this pool.
    ///
    /// Raising it hands the new permits to waiting callers in order. Lowering it takes free
    /// permits away at once; calls in flight above the new number keep their permits and
    /// finish, and no call is admitted until fewer than `n` are in flight — not even a
    /// caller that was waiting before the change. (A call ending on another thread at the
    /// very moment of the change may still hand its permit to a caller arriving in that
    /// same moment, as if it had ended just before: the release path takes no lock. A
    /// permit it gave back free beside the new debt is taken back at once, so no later
    /// caller is admitted by it.)
    ///
    /// Deliberately unlike Resilience4j's `changeConfig`, which blocks the changing thread
    /// until enough permits are free (in its fair semaphore's queue, behind the callers
    /// already waiting, who are admitted first) and only then shows the new maximum: here
    /// the call returns at once, [`max_concurrent`](Self::max_concurrent) reads the new
    /// number, and the calls in flight pay the difference as they finish. Where both have
    /// settled the pools agree (`tests/review_wave5.rs` ports its `changeConfig` tests).
    ///
    /// Zero is accepted here, as Resilience4j's `changeConfig` accepts `maxConcurrentCalls`
    /// 0: the bulkhead then admits nothing — callers wait as `when_full` allows and are
    /// refused — until it is raised again (an operator's "drain" switch). The builder still
    /// asks for at least 1, since a bulkhead configured closed is almost always a mistake
    /// ([`BulkheadLayer::new(0)`](crate::BulkheadLayer::new) builds this drain switch on
    /// purpose).
    ///
    /// # Errors
    ///
    /// `n` above `tokio::sync::Semaphore::MAX_PERMITS`; nothing changes then.
    pub fn set_max_concurrent(&self, n: usize) -> Result<(), ConfigError> {
        self.compartment.set_max_concurrent(n)
    }

    /// What a caller does when every permit is taken now (a wait of 584 years or more
    /// reads back as `Duration::MAX`).
    pub fn when_full(&self) -> WhenFull {
        self.compartment.common.when_full()
    }

    /// Changes what callers do when every permit is taken, for callers that start waiting
    /// from now on (those already waiting keep their deadline).
    pub fn set_when_full(&self, when_full: WhenFull) {
        self.compartment.common.set_when_full(when_full);
    }

    /// How many callers may wait (`None`: no bound).
    pub fn max_queue(&self) -> Option<usize> {
        self.compartment.common.max_queue()
    }

    /// Changes how many callers may wait, for callers arriving from now on (a caller
    /// already waiting keeps its place). `None` is no bound.
    pub fn set_max_queue(&self, max_queue: Option<usize>) {
        self.compartment.common.set_max_queue(max_queue);
    }

    /// Permits held now (reserved by a ready service or held by a running call).
    pub fn in_flight(&self) -> usize {
        self.compartment.in_flight()
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.compartment.available()
    }

    /// Calls refused so far because the inner service was not ready
    /// ([`shed_when_inner_not_ready`](crate::BulkheadBuilder::shed_when_inner_not_ready));
    /// also [`BulkheadSnapshot::rejected_inner_not_ready`], part of its `rejected()`.
    pub fn shed_inner_not_ready(&self) -> u64 {
        self.compartment.common.metrics.rejected_inner_not_ready.get()
    }

    /// Callers waiting for a permit now.
    pub fn queued(&self) -> usize {
        self.compartment.queued()
    }

    /// Calls `f` with every event from now on (as [`BulkheadBuilder::on_event`](crate::BulkheadBuilder::on_event)).
    pub fn on_event<OnEvent>(&self, f: OnEvent)
    where
        OnEvent: Fn(&BulkheadEvent) + Send + Sync + 'static,
    {
        self.compartment.common.events.subscribe(f);
    }

    /// The bulkhead's numbers now.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let c = &self.compartment;
        c.common.snapshot(c.max_concurrent(), c.in_flight(), c.queued())
    }
}

/// A bulkhead's numbers at one moment (from [`BulkheadHandle::snapshot`], or summed over
/// keys in [`KeyedBulkheadSnapshot::total`](crate::KeyedBulkheadSnapshot::total)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// Permits in the pool (per key for a keyed bulkhead).
    pub max_concurrent: usize,
    /// Permits held now.
    pub in_flight: usize,
    /// Callers waiting now.
    pub queued: usize,
    /// Callers that waited in line so far, however the wait ended: with a permit, refused
    /// when it ran out, or dropped while waiting (`palisade_bulkhead_waited_total`).
    pub waited: u64,
    /// Callers refused because the queue was full.
    pub rejected_queue_full: u64,
    /// Callers refused because their wait ran out.
    pub rejected_wait_timed_out: u64,
    /// Callers refused at once because waiting is disabled.
    pub rejected_no_permit: u64,
    /// Calls refused because the inner service was not ready
    /// ([`shed_when_inner_not_ready`](crate::BulkheadBuilder::shed_when_inner_not_ready)).
    pub rejected_inner_not_ready: u64,
    /// Keyed: calls with a new key refused because every key was in use
    /// ([`KeySetFull`](crate::KeySetFull)).
    pub rejected_key_set_full: u64,
    /// Mean wait of the callers that waited, however the wait ended.
    pub mean_wait: Duration,
    /// Longest wait so far.
    pub max_wait: Duration,
}

impl BulkheadSnapshot {
    /// All refusals, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_queue_full
            + self.rejected_wait_timed_out
            + self.rejected_no_permit
            + self.rejected_inner_not_ready
            + self.rejected_key_set_full
    }
}
