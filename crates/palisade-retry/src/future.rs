//! The response futures: [`ResponseFuture`] (retry) and [`HedgeFuture`] (hedge).

pub use crate::hedge::HedgeFuture;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::classify::{Classification, Classify, RetryHint};
use palisade_core::rejection::{RejectionKind, TimedOut};
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::engine::{AttemptCore, Attempts, Call, RetryStrategy};
use crate::error::RetriesExhausted;
use crate::event::{GiveUpReason, RetryEvent, RetryReason};
use crate::timer::Timer;

type Core = AttemptCore<RetryStrategy>;

pin_project! {
    /// The future returned by [`Retry`](crate::Retry): runs attempts until one is final.
    ///
    /// Dropping it drops the attempt in flight (cancelling the inner call) or the backoff
    /// sleep.
    pub struct ResponseFuture<S, Req, C, Replay>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        timer: Timer,
        // When the attempt in flight must end; moved into `timer` on its first `Pending`.
        attempt_end: Option<Instant>,
        // Whether `timer` bounds the attempt in flight.
        attempt_timer: bool,
        // Whether that bound is the total deadline rather than the attempt timeout.
        timer_is_deadline: bool,
        service: S,
        request: Option<Req>,
        core: Arc<Core>,
        classifier: C,
        replay: Replay,
        attempt: u32,
        backoff: BackoffState,
        deadline: Option<Instant>,
    }
}

/// Where one call is in its backoff sequence.
#[derive(Clone, Copy, Debug, Default)]
struct BackoffState {
    /// Retries since the first attempt or the last gRPC pushback (gRFC A6 restarts the
    /// exponential backoff after a pushback, as grpc-go's `numRetriesSincePushback`).
    step: u32,
    /// The last delay used (decorrelated jitter); zero after a pushback.
    previous: Duration,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Calling { #[pin] future: F },
        // Backing off before the next attempt.
        Waiting,
        // Waiting for the inner service to be ready for the next attempt.
        Checking,
        // Refused before the first attempt.
        Rejected { error: Option<BoxError> },
    }
}

impl<S, Req, C, Replay> fmt::Debug for ResponseFuture<S, Req, C, Replay>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Waiting => "waiting",
            State::Checking => "checking",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("name", &self.core.name)
            .field("attempt", &self.attempt)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// When the attempt starting now must end, and whether that bound is the total deadline.
#[inline]
fn attempt_bound(core: &Core, deadline: Option<Instant>) -> Option<(Instant, bool)> {
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
fn exhausted<R, E: Into<BoxError>>(
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

impl<S, Req, C, Replay> ResponseFuture<S, Req, C, Replay>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Replay: crate::replay::Replay<Req>,
{
    /// Sends the first attempt on `ready` (a service that was polled ready) and keeps
    /// `service` (a clone) for the retries.
    #[inline]
    pub(crate) fn start(call: Call<'_, S, Req, C, Replay, RetryStrategy>) -> Self {
        let Call { ready, spare: service, req, copy: request, core, classifier, replay } = call;
        let deadline = core.strategy.deadline.map(deadline_from_now);
        let mut this = Self {
            state: State::Waiting,
            timer: Timer::default(),
            attempt_end: None,
            attempt_timer: false,
            timer_is_deadline: false,
            service,
            request,
            core,
            classifier,
            replay,
            attempt: 1,
            backoff: BackoffState::default(),
            deadline,
        };
        if let Some(throttle) = &this.core.strategy.throttle {
            if let Err(rejection) = throttle.try_acquire() {
                this.core.counters.throttled.increment();
                this.core.counters.refused.increment();
                this.core.events.publish(RetryEvent::Throttled { attempt: 1 });
                this.core.give_up(0, GiveUpReason::Throttled);
                this.state = State::Rejected { error: Some(rejection.into()) };
                return this;
            }
        }
        // The first attempt is the call itself: it is not announced, so that the pass path
        // publishes nothing (`AttemptStarted` marks retries).
        if let Some((at, is_deadline)) = attempt_bound(&this.core, deadline) {
            this.attempt_end = Some(at);
            this.attempt_timer = true;
            this.timer_is_deadline = is_deadline;
        }
        this.state = State::Calling { future: ready.call(req) };
        this
    }
}

/// Decides whether the failed attempt `attempt` is retried; returns when the next attempt
/// may start, or why not.
///
/// The delay: a gRPC pushback ([`RetryHint::Pushback`]) is the delay itself and restarts
/// the backoff (gRFC A6); otherwise the backoff's next delay, raised to an HTTP
/// `Retry-After` ([`RetryHint::After`], a floor). A hint above `hint_limit` gives up.
#[allow(clippy::too_many_arguments)]
fn schedule(
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
fn circuit_open_wait(core: &Core, verdict: Classification) -> (Classification, Duration) {
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
fn record(core: &Core, verdict: &Classification) {
    core.budget.record(verdict.is_throttling_failure(), verdict.is_throttling_success());
    if let Some(throttle) = &core.strategy.throttle {
        throttle.record(!verdict.is_failure());
    }
}

impl<S, Req, C, Replay> Future for ResponseFuture<S, Req, C, Replay>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Replay: crate::replay::Replay<Req>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let core: &Core = this.core;
                    match future.poll(cx) {
                        Poll::Ready(result) => {
                            let verdict = this.classifier.classify(&result);
                            record(core, &verdict);
                            let (verdict, hint_limit) = circuit_open_wait(core, verdict);
                            if !verdict.is_retryable() {
                                if verdict.is_failure() {
                                    core.give_up(*this.attempt, GiveUpReason::NonRetryable);
                                } else if verdict.is_success() {
                                    core.succeeded(*this.attempt);
                                }
                                return Poll::Ready(result.map_err(Into::into));
                            }
                            match schedule(
                                core,
                                *this.attempt,
                                this.backoff,
                                this.request.is_some(),
                                *this.deadline,
                                verdict.hint(),
                                hint_limit,
                                RetryReason::Failure,
                            ) {
                                Ok(at) => {
                                    // Drop the finished attempt before waiting.
                                    this.state.set(State::Waiting);
                                    this.timer.arm(at);
                                }
                                Err(reason) => {
                                    core.give_up(*this.attempt, reason);
                                    return Poll::Ready(exhausted(core, *this.attempt, reason, result));
                                }
                            }
                        }
                        Poll::Pending => {
                            if !*this.attempt_timer || this.timer.poll_lazy(this.attempt_end, cx).is_pending()
                            {
                                return Poll::Pending;
                            }
                            // The attempt ran out of time: cancel it.
                            this.state.set(State::Waiting);
                            if *this.timer_is_deadline {
                                core.counters.deadline_exceeded.increment();
                                core.give_up(*this.attempt, GiveUpReason::DeadlineExceeded);
                                let after = core.strategy.deadline.unwrap_or_default();
                                return Poll::Ready(Err(TimedOut::new(core.name.clone(), after).into()));
                            }
                            core.counters.attempt_timeouts.increment();
                            record(core, &Classification::retryable_failure());
                            match schedule(
                                core,
                                *this.attempt,
                                this.backoff,
                                this.request.is_some(),
                                *this.deadline,
                                RetryHint::None,
                                core.max_retry_after,
                                RetryReason::AttemptTimedOut,
                            ) {
                                Ok(at) => this.timer.arm(at),
                                Err(reason) => {
                                    core.give_up(*this.attempt, reason);
                                    let after = core.strategy.attempt_timeout.unwrap_or_default();
                                    let timed_out: Result<S::Response, BoxError> =
                                        Err(TimedOut::new(core.name.clone(), after).into());
                                    return Poll::Ready(exhausted(core, *this.attempt, reason, timed_out));
                                }
                            }
                        }
                    }
                }
                StateProj::Waiting => {
                    ready!(this.timer.poll_fired(cx));
                    // Waiting for the inner service to be ready counts against the deadline.
                    if let Some(deadline) = *this.deadline {
                        this.timer.arm(deadline);
                    }
                    this.state.set(State::Checking);
                }
                StateProj::Checking => {
                    let ready = match this.service.poll_ready(cx) {
                        Poll::Ready(ready) => ready,
                        Poll::Pending => {
                            if this.deadline.is_some() && this.timer.poll_fired(cx).is_ready() {
                                let core: &Core = this.core;
                                core.counters.deadline_exceeded.increment();
                                core.give_up(*this.attempt, GiveUpReason::DeadlineExceeded);
                                let after = core.strategy.deadline.unwrap_or_default();
                                return Poll::Ready(Err(TimedOut::new(core.name.clone(), after).into()));
                            }
                            return Poll::Pending;
                        }
                    };
                    if let Err(err) = ready {
                        this.core.give_up(*this.attempt, GiveUpReason::NotReady);
                        return Poll::Ready(Err(err.into()));
                    }
                    let Some(req) = this.request.take() else {
                        // `schedule` only retries when a copy exists.
                        return Poll::Ready(Err("palisade-retry: request copy missing".into()));
                    };
                    *this.attempt += 1;
                    if *this.attempt < this.core.max_attempts {
                        *this.request = this.replay.replay(&req);
                    }
                    this.core.events.publish(RetryEvent::AttemptStarted { attempt: *this.attempt });
                    match attempt_bound(this.core, *this.deadline) {
                        Some((at, is_deadline)) => {
                            *this.attempt_end = Some(at);
                            *this.attempt_timer = true;
                            *this.timer_is_deadline = is_deadline;
                        }
                        None => *this.attempt_timer = false,
                    }
                    let future = this.service.call(req);
                    this.state.set(State::Calling { future });
                }
                StateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "palisade-retry: polled after completion".into())));
                }
            }
        }
    }
}

impl<S, Req, C, Replay> Attempts<S, Req, C, Replay> for RetryStrategy
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Replay: crate::replay::Replay<Req>,
{
    type Future = ResponseFuture<S, Req, C, Replay>;

    #[inline]
    fn start(call: Call<'_, S, Req, C, Replay, Self>) -> Self::Future {
        ResponseFuture::start(call)
    }
}
