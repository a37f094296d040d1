//! The retry decision: whether a failed attempt is retried and when, within the budget,
//! the throttle, the server's hint and the deadline.

use std::time::Duration;

use palisade_core::classify::{Classification, RetryHint};
use palisade_core::rejection::RejectionKind;
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use tokio::time::Instant;

use super::retry::Core;
use crate::error::RetriesExhausted;
use crate::event::{GiveUpReason, RetryEvent, RetryReason};

/// Where one call is in its backoff sequence.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BackoffState {
    /// Retries since the first attempt or the last gRPC pushback (gRFC A6 restarts the
    /// exponential backoff after a pushback, as grpc-go's `numRetriesSincePushback`).
    step: u32,
    /// The last delay used (decorrelated jitter); zero after a pushback.
    previous: Duration,
}

/// When the attempt starting now must end, and whether that bound is the total deadline.
#[inline]
pub(super) fn attempt_bound(core: &Core, deadline: Option<Instant>) -> Option<(Instant, bool)> {
    match (core.strategy.attempt_timeout, deadline) {
        (None, None) => None,
        (None, Some(d)) => Some((d, true)),
        (Some(t), d) => {
            let per = deadline_from_now(t);
            match d {
                Some(d) if d <= per => Some((d, true)),
                _ => Some((per, false)),
            }
        }
    }
}

/// The final result after giving up for `reason`: as is, or (opt-in) an error wrapped in
/// [`RetriesExhausted`].
pub(super) fn exhausted<R, E: Into<BoxError>>(
    core: &Core,
    attempts: u32,
    reason: GiveUpReason,
    result: Result<R, E>,
) -> Result<R, BoxError> {
    match result {
        Err(err) if core.strategy.exhausted_error && reason != GiveUpReason::NonRetryable => {
            Err(RetriesExhausted::new(core.name.clone(), attempts, reason, err.into()).into())
        }
        other => other.map_err(Into::into),
    }
}

/// Decides whether the failed attempt `attempt` is retried; returns when the next attempt
/// may start, or why not.
///
/// The delay: a gRPC pushback ([`RetryHint::Pushback`]) is the delay itself and restarts
/// the backoff (gRFC A6); otherwise the backoff's next delay, raised to an HTTP
/// `Retry-After` ([`RetryHint::After`], a floor). A hint above `hint_limit` gives up.
#[allow(clippy::too_many_arguments)]
pub(super) fn schedule(
    core: &Core,
    attempt: u32,
    backoff: &mut BackoffState,
    replayable: bool,
    deadline: Option<Instant>,
    hint: RetryHint,
    hint_limit: Duration,
    reason: RetryReason,
) -> Result<Instant, GiveUpReason> {
    if attempt >= core.max_attempts {
        return Err(GiveUpReason::AttemptsExhausted);
    }
    if !replayable {
        return Err(GiveUpReason::NotReplayable);
    }
    let (delay, server_hint, next) = match hint {
        RetryHint::Pushback(d) => {
            if d > hint_limit {
                return Err(GiveUpReason::HintTooLong);
            }
            (d, Some(d), BackoffState::default())
        }
        RetryHint::After(d) => {
            if d > hint_limit {
                return Err(GiveUpReason::HintTooLong);
            }
            let step = backoff.step.saturating_add(1);
            let delay = core.strategy.delay.next(step, backoff.previous, &core.strategy.rng).max(d);
            (delay, Some(d), BackoffState { step, previous: delay })
        }
        _ => {
            let step = backoff.step.saturating_add(1);
            let delay = core.strategy.delay.next(step, backoff.previous, &core.strategy.rng);
            (delay, None, BackoffState { step, previous: delay })
        }
    };
    // Saturates: a delay too large for the clock is "effectively never", and only a real
    // deadline can turn it into `DeadlineExceeded`.
    let at = deadline_from_now(delay);
    if deadline.is_some_and(|d| at >= d) {
        return Err(GiveUpReason::DeadlineExceeded);
    }
    if let Some(throttle) = &core.strategy.throttle {
        if throttle.try_acquire().is_err() {
            core.counters.throttled.increment();
            core.events.publish(RetryEvent::Throttled { attempt: attempt + 1 });
            return Err(GiveUpReason::Throttled);
        }
    }
    if !core.budget.try_withdraw() {
        core.budget_exhausted(attempt + 1);
        return Err(GiveUpReason::BudgetExhausted);
    }
    *backoff = next;
    core.counters.retries.increment();
    core.events.publish(RetryEvent::RetryScheduled { attempt, delay, reason, server_hint });
    Ok(at)
}

/// With [`wait_for_half_open`](crate::RetryConfig::wait_for_half_open), a refusal by
/// an open breaker whose remaining open time is within the bound becomes a retryable
/// failure whose hint is that time; returns the verdict and the longest hint allowed.
pub(super) fn circuit_open_wait(core: &Core, verdict: Classification) -> (Classification, Duration) {
    if let Some(max_wait) = core.strategy.wait_for_half_open {
        if verdict.is_failure()
            && !verdict.is_retryable()
            && verdict.rejection() == Some(RejectionKind::CircuitOpen)
        {
            let wait = verdict.retry_after().unwrap_or(Duration::ZERO);
            if wait <= max_wait {
                return (verdict.with_retryable(true).with_retry_after(Some(wait)), max_wait);
            }
        }
    }
    (verdict, core.max_retry_after)
}

#[inline]
pub(super) fn record(core: &Core, verdict: &Classification) {
    core.budget.record(verdict.is_throttling_failure(), verdict.is_throttling_success());
    if let Some(throttle) = &core.strategy.throttle {
        throttle.record(!verdict.is_failure());
    }
}
