//! Shared state of a retry layer, and the handle that reads it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::event::EventBus;
use palisade_core::metric::Counter;
use palisade_core::rng::AtomicRng;

use crate::backoff::DelayPolicy;
use crate::budget::RetryBudget;
use crate::event::RetryEvent;
use crate::throttle::AdaptiveThrottle;

/// Everything a retry layer's services share (one `Arc` per layer value).
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    pub(crate) max_attempts: u32,
    pub(crate) delay: DelayPolicy,
    pub(crate) max_retry_after: Duration,
    /// Opt-in: wait for an open breaker to half-open, up to this long.
    pub(crate) wait_for_half_open: Option<Duration>,
    /// Opt-in: wrap the last error in `RetriesExhausted` when retries run out.
    pub(crate) exhausted_error: bool,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) budget: RetryBudget,
    pub(crate) throttle: Option<AdaptiveThrottle>,
    pub(crate) rng: AtomicRng,
    pub(crate) events: EventBus<RetryEvent>,
    pub(crate) counters: Counters,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("delay", &self.delay)
            .field("max_retry_after", &self.max_retry_after)
            .field("wait_for_half_open", &self.wait_for_half_open)
            .field("exhausted_error", &self.exhausted_error)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Counters {
    pub(crate) requests: Counter,
    /// First attempts refused by the throttle (never sent).
    pub(crate) refused: Counter,
    pub(crate) retries: Counter,
    pub(crate) succeeded_after_retry: Counter,
    pub(crate) gave_up: Counter,
    pub(crate) budget_exhausted: Counter,
    pub(crate) throttled: Counter,
    pub(crate) attempt_timeouts: Counter,
    pub(crate) deadline_exceeded: Counter,
    pub(crate) hedges: Counter,
}

impl Counters {
    pub(crate) fn new(pattern: &'static str, name: &str) -> Self {
        // Metric names are static strings: one set per pattern.
        macro_rules! counters {
            ($($field:ident),*) => {
                if pattern == "hedge" {
                    Self { $($field: Counter::new(concat!("palisade_hedge_", stringify!($field), "_total"), name)),* }
                } else {
                    Self { $($field: Counter::new(concat!("palisade_retry_", stringify!($field), "_total"), name)),* }
                }
            };
        }
        counters!(
            requests,
            refused,
            retries,
            succeeded_after_retry,
            gave_up,
            budget_exhausted,
            throttled,
            attempt_timeouts,
            deadline_exceeded,
            hedges
        )
    }

    pub(crate) fn snapshot(&self) -> RetrySnapshot {
        RetrySnapshot {
            requests: self.requests.get(),
            // Derived, so that a call that needs one attempt touches one counter.
            attempts: (self.requests.get() + self.retries.get() + self.hedges.get())
                .saturating_sub(self.refused.get()),
            retries: self.retries.get(),
            succeeded_after_retry: self.succeeded_after_retry.get(),
            gave_up: self.gave_up.get(),
            budget_exhausted: self.budget_exhausted.get(),
            throttled: self.throttled.get(),
            attempt_timeouts: self.attempt_timeouts.get(),
            deadline_exceeded: self.deadline_exceeded.get(),
            hedges: self.hedges.get(),
        }
    }
}

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

/// Reads a retry layer's counters and subscribes to its events; from
/// [`RetryLayer::handle`](crate::RetryLayer::handle).
///
/// # Clone
///
/// Clones (and the layer and all its services) share the same state.
#[derive(Clone, Debug)]
pub struct RetryHandle {
    pub(crate) core: Arc<Core>,
}

impl RetryHandle {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> RetrySnapshot {
        self.core.counters.snapshot()
    }

    /// The layer's retry budget (possibly shared with other layers).
    pub fn budget(&self) -> &RetryBudget {
        &self.core.budget
    }

    /// The layer's adaptive throttle, if it has one.
    pub fn throttle(&self) -> Option<&AdaptiveThrottle> {
        self.core.throttle.as_ref()
    }

    /// Registers a listener for the layer's events.
    pub fn subscribe<F>(&self, listener: F)
    where
        F: Fn(&RetryEvent) + Send + Sync + 'static,
    {
        self.core.events.subscribe(listener);
    }
}
