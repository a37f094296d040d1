//! The handle of a retry or hedge layer, and the snapshot it reads.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::RetryBudget;
use crate::engine::{AttemptCore, HedgeStrategy, RetryStrategy, Strategy};
use crate::event::RetryEvent;
use crate::throttle::AdaptiveThrottle;

/// Counters of a retry or hedge layer, read with [`RetryHandle::snapshot`] or
/// [`HedgeHandle::snapshot`](crate::hedge::HedgeHandle::snapshot).
///
/// With feature `metrics` each (but `attempts`, which is derived from the others) is also
/// exported as `palisade_retry_<field>_total` (or `palisade_hedge_<field>_total`) with the
/// label `name`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetrySnapshot {
    /// Requests received (original calls, not attempts).
    ///
    /// Each service value counts its requests itself and adds them to this counter every 64
    /// requests and when it is dropped, so that a call touches no shared counter: while a
    /// service lives (say, behind a `Buffer`), this may lag by up to 63 per service value.
    /// `attempts` lags with it.
    pub requests: u64,
    /// Attempts sent to the inner service (first attempts, retries and hedges).
    pub attempts: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Calls that succeeded after more than one attempt.
    pub succeeded_after_retry: u64,
    /// Calls that ended with a failure returned to the caller.
    pub gave_up: u64,
    /// Retries or hedges refused by the budget.
    pub budget_exhausted: u64,
    /// Attempts refused by the adaptive throttle.
    pub throttled: u64,
    /// Attempts that ran past the per-attempt timeout.
    pub attempt_timeouts: u64,
    /// Calls stopped by the total deadline.
    pub deadline_exceeded: u64,
    /// Hedged attempts started (hedge layer).
    pub hedges: u64,
}

/// Reads a retry layer's counters and registers listeners for its events; from
/// [`RetryLayer::handle`](crate::RetryLayer).
pub type RetryHandle = AttemptHandle<RetryStrategy>;

/// Reads a hedge layer's counters and registers listeners for its events; from
/// [`HedgeLayer::handle`](crate::hedge::HedgeLayer).
pub type HedgeHandle = AttemptHandle<HedgeStrategy>;

/// The handle of the attempt engine: [`RetryHandle`] or [`HedgeHandle`].
///
/// # Clone
///
/// Clones (and the layer and all its services) share the same state.
pub struct AttemptHandle<St> {
    pub(crate) core: Arc<AttemptCore<St>>,
}

// By hand: a derive would ask `St: Clone`, which the strategies are not.
impl<St> Clone for AttemptHandle<St> {
    fn clone(&self) -> Self {
        Self { core: self.core.clone() }
    }
}

impl<St: Strategy> fmt::Debug for AttemptHandle<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if St::PATTERN == "hedge" { "HedgeHandle" } else { "RetryHandle" };
        f.debug_struct(name).field("config", &self.core).finish()
    }
}

impl<St> AttemptHandle<St> {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> RetrySnapshot {
        self.core.counters.snapshot()
    }

    /// The layer's budget (possibly shared with other layers).
    pub fn budget(&self) -> &RetryBudget {
        &self.core.budget
    }

    /// Registers a listener for the layer's events.
    pub fn on_event<OnEvent>(&self, listener: OnEvent)
    where
        OnEvent: Fn(&RetryEvent) + Send + Sync + 'static,
    {
        self.core.events.subscribe(listener);
    }
}

impl RetryHandle {
    /// The layer's adaptive throttle, if it has one.
    pub fn throttle(&self) -> Option<&AdaptiveThrottle> {
        self.core.strategy.throttle.as_ref()
    }
}

impl HedgeHandle {
    /// The delay before the next hedge now (delayed modes), e.g. the observed percentile.
    pub fn current_delay(&self) -> Option<Duration> {
        self.core.strategy.hedge_delay()
    }
}
