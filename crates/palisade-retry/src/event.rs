//! Events published by the retry and hedge layers.
//!
//! Subscribe from the builder (`.on_event(f)`) or from the handle
//! ([`RetryHandle::on_event`](crate::AttemptHandle::on_event)). Listeners run synchronously
//! on the task that polled the response future: keep them short. Every event is also logged
//! through `tracing` (target `palisade`, `pattern` = `"retry"` or `"hedge"`).

use std::time::Duration;

use palisade_core::event::{Event, FieldValue};
use tracing::Level;

/// Something a retry or hedge layer did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// A retry was sent (`attempt` counts from 1, so the first retry is attempt 2). The
    /// first attempt is the call itself and is not announced: a call that succeeds at once
    /// publishes nothing.
    AttemptStarted {
        /// The attempt number.
        attempt: u32,
    },
    /// Attempt `attempt` failed and the next one will start after `delay`.
    RetryScheduled {
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt (backoff, jitter and server hint applied).
        delay: Duration,
        /// Why the attempt is retried.
        reason: RetryReason,
        /// The server's hint, when it gave one: a floor for `delay` (HTTP `Retry-After`) or
        /// the delay itself (gRPC pushback).
        server_hint: Option<Duration>,
    },
    /// A retry or hedge was wanted but the budget had nothing left.
    BudgetExhausted {
        /// The attempt that would have followed.
        attempt: u32,
    },
    /// The adaptive throttle refused an attempt locally.
    Throttled {
        /// The attempt that was refused.
        attempt: u32,
    },
    /// A hedged attempt was started while earlier ones were still running (hedge layer).
    HedgeStarted {
        /// The attempt number of the hedge.
        attempt: u32,
    },
    /// A call succeeded after more than one attempt.
    SucceededAfterRetry {
        /// Attempts made, including the successful one.
        attempts: u32,
    },
    /// The layer stopped and returned a failure to the caller.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why no further attempt was made.
        reason: GiveUpReason,
    },
}

/// Why an attempt is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// The classifier called the result a retryable failure.
    Failure,
    /// The attempt ran past the per-attempt timeout.
    AttemptTimedOut,
}

/// Why the layer returned a failure without trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// The maximum number of attempts was reached.
    AttemptsExhausted,
    /// The classifier said the failure must not be retried.
    NonRetryable,
    /// The retry budget had nothing left.
    BudgetExhausted,
    /// The adaptive throttle refused the next attempt.
    Throttled,
    /// The request could not be copied for another attempt.
    NotReplayable,
    /// The server asked to wait longer than the layer's `max_retry_after`.
    HintTooLong,
    /// The total deadline passed, or the next wait would pass it.
    DeadlineExceeded,
    /// The inner service failed while getting ready for the next attempt.
    NotReady,
}

impl GiveUpReason {
    /// A short stable name (`"attempts_exhausted"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::NonRetryable => "non_retryable",
            Self::BudgetExhausted => "budget_exhausted",
            Self::Throttled => "throttled",
            Self::NotReplayable => "not_replayable",
            Self::HintTooLong => "hint_too_long",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotReady => "not_ready",
        }
    }
}

impl Event for RetryEvent {
    /// `attempt` (for a give-up or a success after retries: the attempts made), `delay_ms`,
    /// `reason` (`failure`, `attempt_timed_out`; a give-up's reason) and `retry_after_ms`
    /// (the server's hint, when it gave one).
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::AttemptStarted { attempt }
            | Self::BudgetExhausted { attempt }
            | Self::Throttled { attempt }
            | Self::HedgeStarted { attempt } => record("attempt", (*attempt).into()),
            Self::RetryScheduled { attempt, delay, reason, server_hint } => {
                record("attempt", (*attempt).into());
                record("delay_ms", (*delay).into());
                record(
                    "reason",
                    match reason {
                        RetryReason::Failure => "failure",
                        RetryReason::AttemptTimedOut => "attempt_timed_out",
                    }
                    .into(),
                );
                if let Some(hint) = server_hint {
                    record("retry_after_ms", (*hint).into());
                }
            }
            Self::SucceededAfterRetry { attempts } => record("attempt", (*attempts).into()),
            Self::GaveUp { attempts, reason } => {
                record("attempt", (*attempts).into());
                record("reason", reason.as_str().into());
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::AttemptStarted { .. } => "attempt_started",
            Self::RetryScheduled { .. } => "retry_scheduled",
            Self::BudgetExhausted { .. } => "budget_exhausted",
            Self::Throttled { .. } => "throttled",
            Self::HedgeStarted { .. } => "hedge_started",
            Self::SucceededAfterRetry { .. } => "succeeded_after_retry",
            Self::GaveUp { .. } => "gave_up",
        }
    }

    fn level(&self) -> Level {
        match self {
            Self::AttemptStarted { .. } => Level::TRACE,
            Self::BudgetExhausted { .. } | Self::Throttled { .. } => Level::WARN,
            _ => Level::DEBUG,
        }
    }
}
