//! The attempt engine retry and hedging share: one layer, one service, one handle, one
//! shared state, specialised by a [`Strategy`] — [`RetryStrategy`] (one attempt at a time,
//! with backoff) or [`HedgeStrategy`] (several attempts in flight).
//!
//! Users meet these types through their names [`RetryLayer`](crate::RetryLayer),
//! [`Retry`](crate::Retry), [`RetryHandle`](crate::RetryHandle) and
//! [`HedgeLayer`](crate::hedge::HedgeLayer), [`Hedge`](crate::hedge::Hedge),
//! [`HedgeHandle`](crate::hedge::HedgeHandle); a strategy value is built by the builders
//! and is never made by hand.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;
use tower_service::Service;

use palisade_core::event::EventBus;
use palisade_core::metric::Counter;
use palisade_core::rng::AtomicRng;

use crate::backoff::DelayPolicy;
use crate::budget::RetryBudget;
use crate::event::{GiveUpReason, RetryEvent};
use crate::handle::RetrySnapshot;
use crate::hedge::{HedgeMode, LatencyTracker};
use crate::replay::Replay;
use crate::throttle::AdaptiveThrottle;

mod sealed {
    pub trait Sealed {}
}

/// What a layer of the attempt engine does with its attempts: [`RetryStrategy`] or
/// [`HedgeStrategy`]. Sealed.
pub trait Strategy: sealed::Sealed + fmt::Debug + Send + Sync + 'static {
    /// The pattern's name in metrics (`palisade_<pattern>_…_total`) and events.
    const PATTERN: &'static str;
}

/// How a strategy runs the attempts of one call: the response future it makes from a
/// [`Call`]. Sealed (implemented by [`RetryStrategy`] and [`HedgeStrategy`]).
pub trait Attempts<S: Service<Req>, Req, C, Replay>: Strategy + Sized {
    /// The response future.
    type Future: Future<Output = Result<S::Response, BoxError>>;

    /// Starts the call (the first attempt is sent here, or refused).
    fn start(call: Call<'_, S, Req, C, Replay, Self>) -> Self::Future;
}

/// One call as the service hands it to its strategy: the request, its copy for a further
/// attempt, the polled service and a clone of it, the layer's state. Opaque.
pub struct Call<'a, S, Req, C, Replay, St> {
    /// The service that was polled ready: it takes the first attempt.
    pub(crate) ready: &'a mut S,
    /// A clone of it for further attempts.
    pub(crate) spare: S,
    pub(crate) req: Req,
    /// A copy of `req` for the next attempt, if one may follow and the request copies.
    pub(crate) copy: Option<Req>,
    pub(crate) core: Arc<AttemptCore<St>>,
    pub(crate) classifier: C,
    pub(crate) replay: Replay,
}

impl<S, Req, C, Replay, St> fmt::Debug for Call<'_, S, Req, C, Replay, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call").field("layer", &self.core.name).finish_non_exhaustive()
    }
}

/// The retry layer's own settings inside the attempt engine: backoff, deadlines, throttle.
pub struct RetryStrategy {
    pub(crate) delay: DelayPolicy,
    /// Opt-in: wait for an open breaker to half-open, up to this long.
    pub(crate) wait_for_half_open: Option<Duration>,
    /// Opt-in: wrap the last error in `RetriesExhausted` when retries run out.
    pub(crate) exhausted_error: bool,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) throttle: Option<AdaptiveThrottle>,
    pub(crate) rng: AtomicRng,
}

impl sealed::Sealed for RetryStrategy {}
impl Strategy for RetryStrategy {
    const PATTERN: &'static str = "retry";
}

impl fmt::Debug for RetryStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStrategy")
            .field("delay", &self.delay)
            .field("wait_for_half_open", &self.wait_for_half_open)
            .field("retries_exhausted_error", &self.exhausted_error)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

/// The hedge layer's own settings inside the attempt engine: when the next attempt starts.
#[derive(Debug)]
pub struct HedgeStrategy {
    pub(crate) mode: HedgeMode,
    pub(crate) latency: Option<LatencyTracker>,
}

impl sealed::Sealed for HedgeStrategy {}
impl Strategy for HedgeStrategy {
    const PATTERN: &'static str = "hedge";
}

impl HedgeStrategy {
    /// The delay before the next hedge in the delayed modes.
    pub(crate) fn hedge_delay(&self) -> Option<Duration> {
        match self.mode {
            HedgeMode::Delay(d) => Some(d),
            HedgeMode::Percentile { fallback, .. } => {
                Some(self.latency.as_ref().and_then(LatencyTracker::estimate).unwrap_or(fallback))
            }
            HedgeMode::Parallel | HedgeMode::Fallback => None,
        }
    }
}

/// Everything the services of one layer share (one `Arc` per layer value). Opaque: read it
/// through the layer's handle.
pub struct AttemptCore<St> {
    pub(crate) name: Arc<str>,
    pub(crate) max_attempts: u32,
    /// The longest server hint honoured; a longer one stops further attempts.
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: RetryBudget,
    pub(crate) events: EventBus<RetryEvent>,
    pub(crate) counters: Counters,
    pub(crate) strategy: St,
}

impl<St: Strategy> AttemptCore<St> {
    /// The shared parts every builder hands over, plus the strategy.
    pub(crate) fn new(parts: CoreParts, strategy: St) -> Self {
        let CoreParts { name, max_attempts, max_retry_after, budget, listeners } = parts;
        Self {
            events: EventBus::with_listeners(St::PATTERN, name.clone(), listeners),
            counters: Counters::new(St::PATTERN, &name),
            name,
            max_attempts,
            max_retry_after,
            budget,
            strategy,
        }
    }
}

/// The options retry and hedge layers share, validated, as a builder hands them over.
pub(crate) struct CoreParts {
    pub(crate) name: Arc<str>,
    pub(crate) max_attempts: u32,
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: RetryBudget,
    pub(crate) listeners: Vec<palisade_core::event::Listener<RetryEvent>>,
}

impl<St> AttemptCore<St> {
    /// The first attempt's bookkeeping: the budget deposit (reading the clock when `exact`,
    /// see [`RetryBudget::deposit`]) and a copy of the request when another attempt may follow.
    #[inline]
    pub(crate) fn admit<Req, Rp: Replay<Req>>(&self, req: &Req, replay: &Rp, exact: bool) -> Option<Req> {
        if exact {
            self.budget.deposit_exact();
        } else {
            self.budget.deposit();
        }
        if self.max_attempts > 1 {
            replay.replay(req)
        } else {
            None
        }
    }

    /// The call ends with a failure after `attempts` attempts.
    pub(crate) fn give_up(&self, attempts: u32, reason: GiveUpReason) {
        self.counters.gave_up.increment(reason);
        self.events.publish(RetryEvent::GaveUp { attempts, reason });
    }

    /// The call succeeded at attempt `attempts`; counted when that is not the first.
    pub(crate) fn succeeded(&self, attempts: u32) {
        if attempts > 1 {
            self.counters.succeeded_after_retry.increment();
            self.events.publish(RetryEvent::SucceededAfterRetry { attempts });
        }
    }

    /// The budget refused the attempt `attempt`.
    pub(crate) fn budget_exhausted(&self, attempt: u32) {
        self.counters.budget_exhausted.increment();
        self.events.publish(RetryEvent::BudgetExhausted { attempt });
    }
}

impl<St: fmt::Debug> fmt::Debug for AttemptCore<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptCore")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("max_retry_after", &self.max_retry_after)
            .field("budget", &self.budget)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// Every [`GiveUpReason`], in the order of [`GaveUp`]'s series.
const GIVE_UP_REASONS: [GiveUpReason; 8] = [
    GiveUpReason::AttemptsExhausted,
    GiveUpReason::NonRetryable,
    GiveUpReason::BudgetExhausted,
    GiveUpReason::Throttled,
    GiveUpReason::NotReplayable,
    GiveUpReason::HintTooLong,
    GiveUpReason::DeadlineExceeded,
    GiveUpReason::NotReady,
];

/// Calls given up on: one counter (`palisade_retry_gave_up_total`) with a `reason` label.
pub(crate) struct GaveUp([Counter; GIVE_UP_REASONS.len()]);

impl GaveUp {
    fn new(metric: &'static str, name: &str) -> Self {
        Self(GIVE_UP_REASONS.map(|reason| Counter::labeled(metric, name, ("reason", reason.as_str()))))
    }

    fn increment(&self, reason: GiveUpReason) {
        let i = GIVE_UP_REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        if let Some(counter) = self.0.get(i) {
            counter.increment();
        }
    }

    fn get(&self) -> u64 {
        self.0.iter().map(Counter::get).sum()
    }
}

pub(crate) struct Counters {
    pub(crate) requests: Counter,
    /// First attempts refused by the throttle (never sent).
    pub(crate) refused: Counter,
    pub(crate) retries: Counter,
    pub(crate) succeeded_after_retry: Counter,
    pub(crate) gave_up: GaveUp,
    pub(crate) budget_exhausted: Counter,
    pub(crate) throttled: Counter,
    pub(crate) attempt_timeouts: Counter,
    pub(crate) deadline_exceeded: Counter,
    pub(crate) hedges: Counter,
}

impl Counters {
    fn new(pattern: &'static str, name: &str) -> Self {
        // Metric names are static strings: one set per pattern.
        macro_rules! counters {
            ($($field:ident),*) => {
                if pattern == "hedge" {
                    Self {
                        gave_up: GaveUp::new("palisade_hedge_gave_up_total", name),
                        $($field: Counter::new(concat!("palisade_hedge_", stringify!($field), "_total"), name)),*
                    }
                } else {
                    Self {
                        gave_up: GaveUp::new("palisade_retry_gave_up_total", name),
                        $($field: Counter::new(concat!("palisade_retry_", stringify!($field), "_total"), name)),*
                    }
                }
            };
        }
        counters!(
            requests,
            refused,
            retries,
            succeeded_after_retry,
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
