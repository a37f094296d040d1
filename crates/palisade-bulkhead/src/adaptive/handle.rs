//! The handle to an adaptive limit and its snapshot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::WhenFull;

use super::limiter::Limiter;
use crate::event::AdaptiveLimitEvent;

/// A handle to an adaptive limit: the current limit, a snapshot, events.
#[derive(Clone)]
pub struct AdaptiveLimitHandle {
    pub(crate) limiter: Arc<Limiter>,
}

impl fmt::Debug for AdaptiveLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitHandle").field("limiter", &self.limiter).finish()
    }
}

impl AdaptiveLimitHandle {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.limiter.name
    }

    /// The current limit (also the gauge `palisade_adaptive_limit_limit`).
    pub fn limit(&self) -> usize {
        self.limiter.limit()
    }

    /// Calls holding capacity now.
    pub fn in_flight(&self) -> usize {
        self.limiter.in_flight()
    }

    /// Calls waiting in the backlog now.
    pub fn backlog(&self) -> usize {
        self.limiter.backlog_len()
    }

    /// The algorithm's `(min_limit, max_limit)`, when it has bounds.
    pub fn bounds(&self) -> Option<(usize, usize)> {
        self.limiter.bounds()
    }

    /// Sets the limit now (concurrency-limits' `SettableLimit.setLimit`, for any algorithm);
    /// later samples move it from there. Raising it admits backlog waiters at once; lowering
    /// it below the calls in flight lets them finish and admits no more until their number
    /// is below the new limit. Publishes [`AdaptiveLimitEvent::LimitChanged`].
    ///
    /// ```
    /// use palisade_bulkhead::adaptive::Fixed;
    /// use palisade_bulkhead::AdaptiveLimitLayer;
    ///
    /// let layer = AdaptiveLimitLayer::builder().algorithm(Fixed::new(10)).build().unwrap();
    /// layer.handle().set_limit(4).unwrap();
    /// assert_eq!(layer.handle().limit(), 4);
    /// assert!(layer.handle().set_limit(0).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// `limit` is zero or outside the algorithm's [`bounds`](Self::bounds) (change those with
    /// [`set_bounds`](Self::set_bounds)); nothing changes then.
    pub fn set_limit(&self, limit: usize) -> Result<(), ConfigError> {
        self.limiter.set_limit(limit)
    }

    /// Changes the algorithm's `min_limit` and `max_limit` now; the limit moves into them
    /// (with the same effect on waiters and calls in flight as [`set_limit`](Self::set_limit)).
    ///
    /// # Errors
    ///
    /// `max_limit` is zero, `min_limit > max_limit`, or the algorithm has no bounds to
    /// change ([`Fixed`](super::Fixed), the default of a custom algorithm); nothing changes
    /// then.
    pub fn set_bounds(&self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        self.limiter.set_bounds(min_limit, max_limit)
    }

    /// What a call over the limit does now: shed at once, or wait in the backlog up to a
    /// bound (concurrency-limits' `LifoBlockingLimiter.getFixedBacklogTimeoutMillis`).
    pub fn when_full(&self) -> WhenFull {
        self.limiter.backlog_settings().0
    }

    /// Changes what a call over the limit does, for calls arriving from now on (those
    /// already waiting keep their deadline), as
    /// [`BulkheadHandle::set_when_full`](crate::BulkheadHandle::set_when_full): a backlog
    /// switched off at build can be switched on here, and off again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_bulkhead::AdaptiveLimitLayer;
    /// use palisade_core::WhenFull;
    ///
    /// let h = AdaptiveLimitLayer::new().handle();
    /// assert_eq!(h.when_full(), WhenFull::Refuse);
    /// h.set_when_full(WhenFull::wait(Duration::from_millis(250)));
    /// assert_eq!(h.when_full(), WhenFull::wait(Duration::from_millis(250)));
    /// assert_eq!(h.max_queue(), 100);
    /// ```
    pub fn set_when_full(&self, when_full: WhenFull) {
        self.limiter.set_when_full(when_full);
    }

    /// How many calls may wait in the backlog now.
    pub fn max_queue(&self) -> usize {
        self.limiter.backlog_settings().1
    }

    /// Changes how many calls may wait, for calls arriving from now on (a call already
    /// waiting keeps its place); 0 lets nobody wait.
    pub fn set_max_queue(&self, max_queue: usize) {
        self.limiter.set_max_queue(max_queue);
    }

    /// Calls `f` with every event from now on (as
    /// [`AdaptiveLimitBuilder::on_event`](super::AdaptiveLimitBuilder::on_event)).
    pub fn on_event<OnEvent>(&self, f: OnEvent)
    where
        OnEvent: Fn(&AdaptiveLimitEvent) + Send + Sync + 'static,
    {
        self.limiter.events.subscribe(f);
    }

    /// The limit's numbers now.
    pub fn snapshot(&self) -> AdaptiveLimitSnapshot {
        let m = &self.limiter.metrics;
        AdaptiveLimitSnapshot {
            limit: self.limit(),
            in_flight: self.in_flight(),
            backlog: self.backlog(),
            acquired: m.acquired.get(),
            rejected: m.rejected.get(),
            bypassed: m.bypassed.get(),
            dropped: m.dropped.get(),
            mean_wait: m.wait_time.mean(),
            partitions: self
                .limiter
                .partition_state()
                .into_iter()
                .map(|(name, limit, in_flight)| PartitionSnapshot { name, limit, in_flight })
                .collect(),
        }
    }
}

/// An adaptive limit's numbers at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveLimitSnapshot {
    /// The current limit.
    pub limit: usize,
    /// Calls holding capacity.
    pub in_flight: usize,
    /// Calls waiting in the backlog.
    pub backlog: usize,
    /// Calls admitted so far.
    pub acquired: u64,
    /// Calls shed so far.
    pub rejected: u64,
    /// Calls that skipped the limit through the bypass predicate so far.
    pub bypassed: u64,
    /// Calls the classifier judged dropped (timeouts, overload answers) so far.
    pub dropped: u64,
    /// Mean backlog wait of the calls that waited.
    pub mean_wait: Duration,
    /// Each partition's share and use.
    pub partitions: Vec<PartitionSnapshot>,
}

/// One partition in an [`AdaptiveLimitSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionSnapshot {
    /// The partition's name.
    pub name: Arc<str>,
    /// Its guaranteed share of the current limit.
    pub limit: usize,
    /// Its calls holding capacity.
    pub in_flight: usize,
}
