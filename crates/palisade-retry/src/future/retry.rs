//! The retry layer's response future: one attempt at a time, with backoff.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use palisade_core::classify::{Classification, Classify, RetryHint};
use palisade_core::rejection::TimedOut;
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::engine::{AttemptCore, Attempts, Call, RetryStrategy};
use crate::event::{GiveUpReason, RetryEvent, RetryReason};
use crate::timer::Timer;

use super::decide::{attempt_bound, circuit_open_wait, exhausted, record, schedule, BackoffState};

pub(super) type Core = AttemptCore<RetryStrategy>;

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
        // Sends the first attempt on `ready` (a service that was polled ready) and keeps
        // `service` (a clone) for the retries.
        let Call { ready, spare: service, req, copy: request, core, classifier, replay } = call;
        let deadline = core.strategy.deadline.map(deadline_from_now);
        let mut state = State::Waiting;
        if let Some(throttle) = &core.strategy.throttle {
            if let Err(rejection) = throttle.try_acquire() {
                core.counters.throttled.increment();
                core.counters.refused.increment();
                core.events.publish(RetryEvent::Throttled { attempt: 1 });
                core.give_up(0, GiveUpReason::Throttled);
                state = State::Rejected { error: Some(rejection.into()) };
            }
        }
        // The first attempt is the call itself: it is not announced, so that the pass path
        // publishes nothing (`AttemptStarted` marks retries). The future is built once, in
        // its final state (assembling it field by field costs store-forwarding stalls on
        // the pass path).
        let bound = attempt_bound(&core, deadline);
        if matches!(state, State::Waiting) {
            state = State::Calling { future: ready.call(req) };
        }
        ResponseFuture {
            state,
            timer: Timer::default(),
            attempt_end: bound.map(|(at, _)| at),
            attempt_timer: bound.is_some(),
            timer_is_deadline: bound.is_some_and(|(_, is_deadline)| is_deadline),
            service,
            request,
            core,
            classifier,
            replay,
            attempt: 1,
            backoff: BackoffState::default(),
            deadline,
        }
    }
}
