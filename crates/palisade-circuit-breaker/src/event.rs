//! Events published by a breaker: state transitions, rejections, recorded calls.
//!
//! Listen with [`CircuitBreakerBuilder::on_event`](crate::CircuitBreakerBuilder::on_event)
//! or [`CircuitBreakerHandle::on_event`](crate::CircuitBreakerHandle::on_event). Every event
//! also goes to `tracing` (target `palisade`): transitions to open at `WARN`, other
//! transitions at `INFO`, rejections at `DEBUG`, recorded calls at `TRACE`.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use palisade_circuit_breaker::{CircuitBreakerEvent, CircuitBreakerLayer, CircuitState};
//!
//! let opened = Arc::new(Mutex::new(Vec::new()));
//! let seen = opened.clone();
//! let layer = CircuitBreakerLayer::builder()
//!     .consecutive_failures(3)
//!     .on_event(move |e| {
//!         if let CircuitBreakerEvent::StateTransition { to: CircuitState::Open, reason, .. } = e {
//!             seen.lock().unwrap().push(*reason);
//!         }
//!     })
//!     .build()?;
//! # let _ = layer;
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::Outcome;
use palisade_core::event::{Event, FieldValue};
use tracing::Level;

use crate::state::CircuitState;

/// Something a breaker did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CircuitBreakerEvent {
    /// The breaker changed state.
    StateTransition {
        /// The state before.
        from: CircuitState,
        /// The state after.
        to: CircuitState,
        /// Why.
        reason: TransitionReason,
        /// For a keyed breaker, its key (`Debug`-formatted), so that logs and listeners
        /// tell which host or tenant tripped.
        key: Option<Arc<str>>,
    },
    /// A call was rejected without reaching the inner service.
    Rejected {
        /// The hint given to the caller.
        retry_after: Duration,
    },
    /// Closed (or metrics-only): the window's failure rate reached the threshold. Published
    /// just before the transition to open it causes (metrics-only: once per period, and the
    /// breaker stays as it is), as Resilience4j's `FailureRateExceeded` event.
    FailureRateExceeded {
        /// The rate, from 0 to 1.
        rate: f64,
        /// For a keyed breaker, its key.
        key: Option<Arc<str>>,
    },
    /// Closed (or metrics-only): the window's slow-call rate reached the threshold; as
    /// [`FailureRateExceeded`](Self::FailureRateExceeded).
    SlowCallRateExceeded {
        /// The rate, from 0 to 1.
        rate: f64,
        /// For a keyed breaker, its key.
        key: Option<Arc<str>>,
    },
    /// The breaker was reset by hand (a `StateTransition` comes first if the state changed).
    Reset {
        /// For a keyed breaker, its key.
        key: Option<Arc<str>>,
    },
    /// A call's result was recorded.
    Recorded {
        /// The classifier's verdict.
        outcome: Outcome,
        /// Whether the call was slower than the slow-call threshold.
        slow: bool,
        /// How long the call took, when durations are measured.
        elapsed: Option<Duration>,
    },
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Consecutive mode: this many failures in a row.
    ConsecutiveFailures {
        /// Failures in a row.
        failures: u64,
    },
    /// Failure-count mode: this many failures in the time window.
    FailureCount {
        /// Failures in the window.
        failures: u64,
    },
    /// Failure-rate mode: the window's failure rate reached the threshold.
    FailureRate {
        /// The rate, from 0 to 1.
        rate: f64,
    },
    /// The window's slow-call rate reached the threshold.
    SlowCallRate {
        /// The rate, from 0 to 1.
        rate: f64,
    },
    /// A failed call carried a server retry hint; the breaker opens that long.
    RetryAfter {
        /// How long the breaker stays open.
        wait: Duration,
    },
    /// The wait in open state is over: trial calls may pass.
    WaitElapsed,
    /// Half-open for [`max_wait_in_half_open`](crate::CircuitBreakerConfig::max_wait_in_half_open)
    /// without a decision of the trials (a trial hung): open again.
    HalfOpenTimedOut,
    /// Enough trial calls succeeded.
    TrialsSucceeded {
        /// Successful trials.
        successes: u16,
    },
    /// Too many trial calls failed.
    TrialsFailed {
        /// Failed trials.
        failures: u16,
    },
    /// Set by hand through the handle.
    Manual,
    /// Reset by hand through the handle.
    Reset,
}

impl Event for CircuitBreakerEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::StateTransition { .. } => "state_transition",
            Self::Rejected { .. } => "rejected",
            Self::Recorded { .. } => "recorded",
            Self::FailureRateExceeded { .. } => "failure_rate_exceeded",
            Self::SlowCallRateExceeded { .. } => "slow_call_rate_exceeded",
            Self::Reset { .. } => "reset",
        }
    }

    fn level(&self) -> Level {
        match self {
            Self::StateTransition { to: CircuitState::Open | CircuitState::ForcedOpen, .. }
            | Self::FailureRateExceeded { .. }
            | Self::SlowCallRateExceeded { .. } => Level::WARN,
            Self::StateTransition { .. } | Self::Reset { .. } => Level::INFO,
            Self::Rejected { .. } => Level::DEBUG,
            Self::Recorded { .. } => Level::TRACE,
        }
    }

    /// `from`, `to`, `reason` (with its number: `failures`, `failure_rate`, …), `key`,
    /// `retry_after_ms`, `outcome`, `slow`, `elapsed_ms`: the structured `tracing` fields.
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        fn key_field(key: Option<&Arc<str>>, record: &mut dyn FnMut(&'static str, FieldValue)) {
            if let Some(key) = key {
                record("key", key.into());
            }
        }
        match self {
            Self::StateTransition { from, to, reason, key } => {
                record("from", from.as_str().into());
                record("to", to.as_str().into());
                reason_fields(*reason, record);
                key_field(key.as_ref(), record);
            }
            Self::Rejected { retry_after } => record("retry_after_ms", (*retry_after).into()),
            Self::FailureRateExceeded { rate, key } => {
                record("failure_rate", (*rate).into());
                key_field(key.as_ref(), record);
            }
            Self::SlowCallRateExceeded { rate, key } => {
                record("slow_call_rate", (*rate).into());
                key_field(key.as_ref(), record);
            }
            Self::Reset { key } => key_field(key.as_ref(), record),
            Self::Recorded { outcome, slow, elapsed } => {
                let outcome = match outcome {
                    Outcome::Success => "success",
                    Outcome::Failure => "failure",
                    Outcome::Ignored => "ignored",
                };
                record("outcome", outcome.into());
                record("slow", (*slow).into());
                if let Some(elapsed) = elapsed {
                    record("elapsed_ms", (*elapsed).into());
                }
            }
        }
    }
}

/// A transition's reason as the `reason` field plus the number that tripped it.
fn reason_fields(reason: TransitionReason, record: &mut dyn FnMut(&'static str, FieldValue)) {
    let name = match reason {
        TransitionReason::ConsecutiveFailures { failures } => {
            record("failures", failures.into());
            "consecutive_failures"
        }
        TransitionReason::FailureCount { failures } => {
            record("failures", failures.into());
            "failure_count"
        }
        TransitionReason::FailureRate { rate } => {
            record("failure_rate", rate.into());
            "failure_rate"
        }
        TransitionReason::SlowCallRate { rate } => {
            record("slow_call_rate", rate.into());
            "slow_call_rate"
        }
        TransitionReason::RetryAfter { wait } => {
            record("retry_after_ms", wait.into());
            "retry_after"
        }
        TransitionReason::WaitElapsed => "wait_elapsed",
        TransitionReason::HalfOpenTimedOut => "half_open_timed_out",
        TransitionReason::TrialsSucceeded { successes } => {
            record("successes", successes.into());
            "trials_succeeded"
        }
        TransitionReason::TrialsFailed { failures } => {
            record("failures", failures.into());
            "trials_failed"
        }
        TransitionReason::Manual => "manual",
        TransitionReason::Reset => "reset",
    };
    record("reason", name.into());
}

/// Wraps a listener so that a panic in it is caught and logged: a listener runs on the
/// caller's task, inside the breaker's bookkeeping, and must fail neither.
pub(crate) fn guarded<OnEvent>(f: OnEvent) -> impl Fn(&CircuitBreakerEvent) + Send + Sync + 'static
where
    OnEvent: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
{
    move |event: &CircuitBreakerEvent| {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(event))).is_err() {
            tracing::error!(target: "palisade", pattern = "circuit_breaker", event = event.kind(), "a circuit breaker listener panicked; the event is dropped for it");
        }
    }
}
