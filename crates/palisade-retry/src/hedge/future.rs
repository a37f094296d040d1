use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::classify::{Classify, RetryHint};
use palisade_core::rejection::RejectionKind;
use palisade_core::time::{deadline_after, deadline_from_now};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use super::HedgeMode;
use crate::budget::Payment;
use crate::engine::{AttemptCore, Attempts, Call, HedgeStrategy};
use crate::event::{GiveUpReason, RetryEvent};
use crate::timer::Timer;

type HedgeCore = AttemptCore<HedgeStrategy>;

pin_project! {
    #[project = SlotProj]
    enum Slot<F> {
        Running { #[pin] future: F },
        Done,
    }
}

pin_project! {
    /// The future returned by [`Hedge`](super::Hedge). Dropping it drops every attempt in
    /// flight.
    pub struct HedgeFuture<S, Req, C, Replay>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: Slot<S::Future>,
        timer: Timer,
        // The hedge delay of the first attempt, turned into `hedge_at` from the clock on the
        // first `Pending` (a call that answers at once reads no clock).
        hedge_after: Option<Duration>,
        // When the next hedge is due; moved into `timer` once every attempt is pending.
        hedge_at: Option<Instant>,
        hedges: Vec<(Option<Instant>, Pin<Box<S::Future>>)>,
        // Read only when the layer tracks latencies.
        primary_started: Option<Instant>,
        service: S,
        request: Option<Req>,
        core: Arc<HedgeCore>,
        classifier: C,
        replay: Replay,
        launched: u32,
        launch_due: bool,
        // A server pushback holds the next attempt until the timer fires, in every mode.
        gated: bool,
        // Why no new attempt may start (budget spent, server said no, not ready).
        stopped: Option<GiveUpReason>,
        // The next hedge's payment (the budget is asked before the inner service is polled
        // ready, so that a refused hedge never holds capacity it reserved); given back when
        // the call ends before the hedge is sent.
        paid: Option<Payment>,
        last: Option<Result<S::Response, S::Error>>,
    }
}

impl<S, Req, C, Replay> fmt::Debug for HedgeFuture<S, Req, C, Replay>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeFuture")
            .field("name", &self.core.name)
            .field("launched", &self.launched)
            .field("hedges_in_flight", &self.hedges.len())
            .finish_non_exhaustive()
    }
}

/// What one finished attempt means.
enum Verdict {
    /// Return it.
    Final,
    /// A non-fatal failure: keep it, the others go on.
    Continue,
}

impl<S, Req, C, Replay> Future for HedgeFuture<S, Req, C, Replay>
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
            // 1. Poll every attempt in flight.
            let mut finished = None;
            if let SlotProj::Running { future } = this.primary.as_mut().project() {
                if let Poll::Ready(res) = future.poll(cx) {
                    this.primary.set(Slot::Done);
                    finished = Some((res, *this.primary_started));
                }
            }
            let mut i = 0;
            while finished.is_none() && i < this.hedges.len() {
                if let Poll::Ready(res) = this.hedges[i].1.as_mut().poll(cx) {
                    let (started, _) = this.hedges.swap_remove(i);
                    finished = Some((res, started));
                } else {
                    i += 1;
                }
            }
            if let Some((res, started)) = finished {
                let core: &HedgeCore = this.core;
                let verdict = this.classifier.classify(&res);
                core.budget.record(verdict.is_throttling_failure(), verdict.is_throttling_success());
                // gRFC A6: only OK or a fatal status commits the call; a non-fatal failure
                // lets the other attempts go on, even when its pushback says not to retry.
                // An attempt refused locally (an open breaker, a full bulkhead, a rate limit
                // between this layer and the backend: a palisade rejection other than a
                // timeout) was never sent: it says nothing about the attempts in flight, which
                // go on; no new attempt is sent, it would meet the same refusal.
                let refused_locally = verdict.rejection().is_some_and(|kind| kind != RejectionKind::TimedOut);
                let outcome = if verdict.is_non_fatal_failure() || (refused_locally && !verdict.is_success())
                {
                    Verdict::Continue
                } else {
                    Verdict::Final
                };
                match outcome {
                    Verdict::Final => {
                        if verdict.is_success() {
                            if let (Some(latency), Some(started)) = (&core.strategy.latency, started) {
                                latency.record(Instant::now().saturating_duration_since(started));
                            }
                            core.succeeded(*this.launched);
                        } else if verdict.is_failure() {
                            core.give_up(*this.launched, GiveUpReason::NonRetryable);
                        }
                        // Cancel the losers now, not when the caller drops this future.
                        this.primary.set(Slot::Done);
                        this.hedges.clear();
                        return Poll::Ready(res.map_err(Into::into));
                    }
                    Verdict::Continue => {
                        *this.last = Some(res);
                        if refused_locally {
                            this.stopped.get_or_insert(GiveUpReason::NonRetryable);
                            continue;
                        }
                        match verdict.hint() {
                            // "Do not retry": no new attempt; those in flight go on.
                            RetryHint::DoNotRetry => {
                                this.stopped.get_or_insert(GiveUpReason::NonRetryable);
                            }
                            // A pushback longer than the layer honours: as "do not retry"
                            // (a server cannot hold the call for days).
                            RetryHint::Pushback(d) if d > core.max_retry_after => {
                                this.stopped.get_or_insert(GiveUpReason::HintTooLong);
                            }
                            // A pushback of n ms: the next attempt after n ms.
                            RetryHint::Pushback(d) => {
                                *this.hedge_after = None;
                                *this.hedge_at = Some(deadline_from_now(d));
                                *this.gated = true;
                                *this.launch_due = false;
                            }
                            // gRFC A6: a non-fatal failure sends the next hedge at once —
                            // unless a server pushback is pending: the server's explicit wait
                            // stands (as grpc-java keeps the pushback's schedule).
                            _ if *this.gated => {}
                            _ => *this.launch_due = true,
                        }
                        continue;
                    }
                }
            }

            // 2. Nothing finished: start another attempt when one is due.
            let in_flight = matches!(*this.primary, Slot::Running { .. }) || !this.hedges.is_empty();
            let can_launch =
                this.stopped.is_none() && *this.launched < this.core.max_attempts && this.request.is_some();
            if !can_launch {
                if in_flight {
                    return Poll::Pending;
                }
                let reason = if let Some(reason) = *this.stopped {
                    reason
                } else if *this.launched >= this.core.max_attempts {
                    GiveUpReason::AttemptsExhausted
                } else {
                    GiveUpReason::NotReplayable
                };
                this.core.give_up(*this.launched, reason);
                return Poll::Ready(match this.last.take() {
                    Some(res) => res.map_err(Into::into),
                    None => Err("palisade-retry: hedge finished without a result".into()),
                });
            }
            if !*this.launch_due {
                if let Some(after) = this.hedge_after.take() {
                    *this.hedge_at = Some(deadline_from_now(after));
                }
                let due = if *this.gated {
                    this.timer.poll_lazy(this.hedge_at, cx).is_ready()
                } else {
                    match this.core.strategy.mode {
                        HedgeMode::Delay(_) | HedgeMode::Percentile { .. } => {
                            this.timer.poll_lazy(this.hedge_at, cx).is_ready()
                        }
                        HedgeMode::Parallel => true,
                        HedgeMode::Fallback => !in_flight,
                    }
                };
                if !due {
                    return Poll::Pending;
                }
                *this.gated = false;
                *this.launch_due = true;
            }
            // The budget first: polling the inner service ready reserves capacity (a
            // permit, a connection) that a refused hedge would hold until the call ends.
            if this.paid.is_none() {
                let Some(payment) = this.core.budget.try_pay() else {
                    this.core.budget_exhausted(*this.launched + 1);
                    *this.stopped = Some(GiveUpReason::BudgetExhausted);
                    continue;
                };
                *this.paid = Some(payment);
            }
            match this.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => {
                    if !in_flight {
                        this.core.give_up(*this.launched, GiveUpReason::NotReady);
                        return Poll::Ready(Err(err.into()));
                    }
                    // The attempts in flight may still answer.
                    *this.stopped = Some(GiveUpReason::NotReady);
                    continue;
                }
                Poll::Ready(Ok(())) => {}
            }
            let Some(req) = this.request.take() else { continue };
            if let Some(payment) = this.paid.take() {
                payment.spend();
            }
            *this.launched += 1;
            if *this.launched < this.core.max_attempts {
                *this.request = this.replay.replay(&req);
            }
            this.core.counters.hedges.increment();
            this.core.events.publish(RetryEvent::HedgeStarted { attempt: *this.launched });
            let now = Instant::now();
            let future = this.service.call(req);
            this.hedges.push((this.core.strategy.latency.as_ref().map(|_| now), Box::pin(future)));
            *this.launch_due = false;
            *this.hedge_at = this.core.strategy.hedge_delay().map(|delay| deadline_after(now, delay));
        }
    }
}

impl<S, Req, C, Replay> Attempts<S, Req, C, Replay> for HedgeStrategy
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Replay: crate::replay::Replay<Req>,
{
    type Future = HedgeFuture<S, Req, C, Replay>;

    #[inline]
    fn start(call: Call<'_, S, Req, C, Replay, Self>) -> Self::Future {
        let Call { ready, spare: service, req, copy: request, core, classifier, replay } = call;
        let primary_started = core.strategy.latency.as_ref().map(|_| Instant::now());
        let hedge_after = if core.max_attempts > 1 { core.strategy.hedge_delay() } else { None };
        let launch_due = core.strategy.mode == HedgeMode::Parallel;
        let primary = Slot::Running { future: ready.call(req) };
        HedgeFuture {
            primary,
            timer: Timer::default(),
            hedge_after,
            hedge_at: None,
            hedges: Vec::new(),
            primary_started,
            service,
            request,
            core,
            classifier,
            replay,
            launched: 1,
            launch_due,
            gated: false,
            stopped: None,
            paid: None,
            last: None,
        }
    }
}
