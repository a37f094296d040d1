//! Admitting calls and recording their results.

use std::time::Duration;

use palisade_core::classify::{Classification, Outcome};
use tokio::time::Instant;

use super::{Admission, BreakerCore, OpenSpec, Refusal, MIN_HINT};
use crate::event::{CircuitBreakerEvent, TransitionReason};
use crate::settings::Trip;
use crate::state::{gen_of, state_of, CircuitState};
use crate::sync::Ordering;
use crate::window::{Aggregate, Sample};

impl BreakerCore {
    /// Lets a call through, or says how long until the breaker may let one through.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Admission, Refusal> {
        // Each turn either returns or follows a transition; six turns are plenty (half-open
        // timed out -> open -> half-open).
        for _ in 0..6 {
            let word = self.word();
            let gen = gen_of(word);
            match state_of(word) {
                CircuitState::Closed | CircuitState::MetricsOnly => return Ok(Admission::Record { gen }),
                CircuitState::Disabled => return Ok(Admission::Pass),
                CircuitState::ForcedOpen => {
                    return Err(Refusal { retry_after: self.settings.wait, isolated: true });
                }
                CircuitState::Open => {
                    let until = self.open_until.load(Ordering::Acquire);
                    let now = self.now_nanos();
                    if now < until {
                        return Err(Refusal {
                            retry_after: Duration::from_nanos(until - now),
                            isolated: false,
                        });
                    }
                    self.transition(Some(word), CircuitState::HalfOpen, TransitionReason::WaitElapsed);
                }
                CircuitState::HalfOpen => {
                    if self.trials.try_acquire(gen as u16, self.settings.half_open_trials) {
                        // A trial slot is free: the half-open period has not timed out
                        // unless its deadline passed, checked below for the others.
                        let until = self.half_open_until.load(Ordering::Acquire);
                        if until == u64::MAX || self.now_nanos() < until {
                            return Ok(Admission::Trial { gen });
                        }
                        self.trials.complete(gen as u16, None);
                    }
                    let until = self.half_open_until.load(Ordering::Acquire);
                    let now = self.now_nanos();
                    if now >= until {
                        self.half_open_timed_out(word, until);
                        continue;
                    }
                    // Every slot is taken: the trials decide by the deadline at the latest;
                    // hint the last open wait if shorter. Never zero (`Retry-After: 0`
                    // would invite a stampede on a recovering backend).
                    let hint = self.last_wait.load(Ordering::Acquire).min(until - now);
                    return Err(Refusal {
                        retry_after: Duration::from_nanos(hint.max(MIN_HINT)),
                        isolated: false,
                    });
                }
            }
        }
        Err(Refusal { retry_after: self.settings.wait, isolated: false })
    }

    /// Counts a rejection and tells the listeners.
    pub(crate) fn on_rejected(&self, retry_after: Duration) {
        self.counters.rejected.increment();
        self.rejected_in_state.fetch_add(1, Ordering::Relaxed);
        self.shared.events.publish(CircuitBreakerEvent::Rejected { retry_after });
    }

    /// A trial that ended without a verdict gives its slot back.
    pub(crate) fn release_trial(&self, gen: u64) {
        self.trials.complete(gen as u16, None);
    }

    /// Records the result of a call let through with `admission`.
    /// `timing` is the call's end and duration, when durations are measured; `stripe` is
    /// where the call counts.
    #[inline]
    pub(crate) fn record(
        &self,
        admission: Admission,
        verdict: Classification,
        timing: Option<(Instant, Duration)>,
        stripe: usize,
    ) {
        let elapsed = timing.map(|t| t.1);
        let (Admission::Record { gen } | Admission::Trial { gen }) = admission else {
            return;
        };
        let outcome = verdict.outcome();
        let slow = matches!((self.settings.slow, elapsed), (Some(s), Some(e)) if e > s.threshold)
            && outcome != Outcome::Ignored;
        match outcome {
            Outcome::Success => {
                // A success recorded in closed state is counted where it is recorded (a
                // count window may count it by its position counter, see `snapshot`).
                if !matches!(admission, Admission::Record { .. }) {
                    self.successes.increment(stripe);
                }
                #[cfg(feature = "metrics")]
                self.counters.successes.increment();
            }
            Outcome::Failure => self.counters.failures.increment(),
            Outcome::Ignored => self.counters.ignored.increment(),
        }
        if slow {
            self.counters.slow.increment();
        }
        if self.shared.records_observed() {
            self.shared.events.publish(CircuitBreakerEvent::Recorded { outcome, slow, elapsed });
        }
        let failure = outcome == Outcome::Failure;
        let hint = if failure { self.settings.retry_after_cap.zip(verdict.retry_after()) } else { None };
        let hint = hint.map(|(cap, d)| d.min(cap)).filter(|d| !d.is_zero());
        match admission {
            Admission::Record { .. } if outcome != Outcome::Ignored => {
                self.record_closed(gen, Sample { failure, slow }, hint, timing.map(|t| t.0), stripe);
            }
            Admission::Trial { .. } => {
                self.record_trial(gen, (outcome != Outcome::Ignored).then_some(failure || slow), hint);
            }
            _ => {}
        }
    }

    #[inline]
    pub(super) fn record_closed(
        &self,
        gen: u64,
        sample: Sample,
        hint: Option<Duration>,
        end: Option<Instant>,
        stripe: usize,
    ) {
        let failure = sample.failure;
        let word = self.word();
        if gen_of(word) != gen {
            if !failure {
                self.successes.increment(stripe);
            }
            return;
        }
        let consecutive = if let Trip::Consecutive(_) = self.settings.trip {
            if failure {
                self.consecutive.fetch_add(1, Ordering::AcqRel) + 1
            } else {
                // Skip the store (and the cache-line write) when already zero.
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Release);
                }
                0
            }
        } else {
            0
        };
        let aggregate = match &self.window {
            None => {
                if !failure {
                    self.successes.increment(stripe);
                }
                None
            }
            Some(w) => {
                let now = if w.is_time() { self.epoch.at_end(end) } else { 0 };
                if failure && w.counts_calls() {
                    self.window_failures.fetch_add(1, Ordering::Relaxed);
                }
                let (claimed, aggregate) = w.record(stripe, now, sample, self.settings.minimum_calls);
                if !failure && !claimed {
                    self.successes.increment(stripe);
                }
                match aggregate {
                    // A plain success in a window that already holds the minimum: it
                    // cannot open the breaker.
                    None => return,
                    some => some,
                }
            }
        };
        match state_of(word) {
            CircuitState::Closed => {
                if let Some(wait) = hint {
                    self.transition(Some(word), CircuitState::Open, TransitionReason::RetryAfter { wait });
                } else if let Some(reason) = self.trip_reason(consecutive, aggregate) {
                    let exceeded = self.exceeded_event(reason);
                    self.apply(Some(word), CircuitState::Open, reason, OpenSpec::Now, exceeded, true);
                }
            }
            CircuitState::MetricsOnly => {
                // Thresholds are watched, never acted on; the event once per period
                // (as Resilience4j's metrics-only state).
                let exceeded = self.trip_reason(consecutive, aggregate).and_then(|r| self.exceeded_event(r));
                if let Some(event) = exceeded {
                    if self.exceeded_published.swap(1, Ordering::AcqRel) == 0 {
                        self.shared.events.publish(event);
                    }
                }
            }
            _ => {}
        }
    }

    /// The threshold-exceeded event that goes with opening for `reason`, if any.
    pub(super) fn exceeded_event(&self, reason: TransitionReason) -> Option<CircuitBreakerEvent> {
        let key = self.key.clone();
        match reason {
            TransitionReason::FailureRate { rate } => {
                Some(CircuitBreakerEvent::FailureRateExceeded { rate, key })
            }
            TransitionReason::SlowCallRate { rate } => {
                Some(CircuitBreakerEvent::SlowCallRateExceeded { rate, key })
            }
            _ => None,
        }
    }

    #[inline]
    pub(super) fn trip_reason(
        &self,
        consecutive: u64,
        aggregate: Option<Aggregate>,
    ) -> Option<TransitionReason> {
        let s = &self.settings;
        if let Trip::Consecutive(n) = s.trip {
            if consecutive >= u64::from(n) {
                return Some(TransitionReason::ConsecutiveFailures { failures: consecutive });
            }
        }
        let a = aggregate?;
        match s.trip {
            Trip::FailureCount(n) if a.failures >= u64::from(n) => {
                return Some(TransitionReason::FailureCount { failures: a.failures });
            }
            Trip::FailureRate(r) if a.calls >= s.minimum_calls => {
                let rate = a.failures as f64 / a.calls as f64;
                if rate >= r {
                    return Some(TransitionReason::FailureRate { rate });
                }
            }
            _ => {}
        }
        if let Some(slow) = s.slow {
            if a.calls >= s.minimum_calls {
                let rate = a.slow as f64 / a.calls as f64;
                if rate >= slow.rate {
                    return Some(TransitionReason::SlowCallRate { rate });
                }
            }
        }
        None
    }

    pub(super) fn record_trial(&self, gen: u64, failed: Option<bool>, hint: Option<Duration>) {
        let Some(tally) = self.trials.complete(gen as u16, failed) else {
            return;
        };
        if failed.is_none() {
            return;
        }
        let word = self.word();
        if gen_of(word) != gen || state_of(word) != CircuitState::HalfOpen {
            return;
        }
        let s = &self.settings;
        if let Some(wait) = hint {
            self.transition(Some(word), CircuitState::Open, TransitionReason::RetryAfter { wait });
            return;
        }
        let failed_enough = tally.failures >= s.half_open_failures_to_open;
        if s.wait_for_all_trials {
            if u32::from(tally.successes) + u32::from(tally.failures) < u32::from(s.half_open_trials) {
                return;
            }
            if failed_enough {
                self.transition(
                    Some(word),
                    CircuitState::Open,
                    TransitionReason::TrialsFailed { failures: tally.failures },
                );
            } else {
                self.transition(
                    Some(word),
                    CircuitState::Closed,
                    TransitionReason::TrialsSucceeded { successes: tally.successes },
                );
            }
        } else if failed_enough {
            self.transition(
                Some(word),
                CircuitState::Open,
                TransitionReason::TrialsFailed { failures: tally.failures },
            );
        } else if tally.successes > s.half_open_trials - s.half_open_failures_to_open {
            self.transition(
                Some(word),
                CircuitState::Closed,
                TransitionReason::TrialsSucceeded { successes: tally.successes },
            );
        }
    }
}
