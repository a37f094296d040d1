//! Moving a breaker from one state to another.

use tokio::time::Instant;

use super::{start_of, BreakerCore, OpenSpec, MIN_HINT};
use crate::event::{CircuitBreakerEvent, TransitionReason};
use crate::state::{gen_of, pack, state_of, CircuitState};
use crate::sync::{lock, Ordering};

use super::nanos;

impl BreakerCore {
    pub(super) fn reset_window(&self) {
        self.consecutive.store(0, Ordering::Release);
        if let Some(w) = &self.window {
            w.reset();
        }
    }

    /// Moves to `to` if the state word still is `expected` (any word for `None`). Returns
    /// whether this call made the transition.
    pub(crate) fn transition(
        &self,
        expected: Option<u64>,
        to: CircuitState,
        reason: TransitionReason,
    ) -> bool {
        self.apply(expected, to, reason, OpenSpec::Now, None, true)
    }

    /// Opens by hand until `until` (then half-open as usual), without touching the wait level.
    pub(crate) fn open_until(&self, until: Instant) {
        let until = self.nanos_at(until).max(1);
        self.apply(None, CircuitState::Open, TransitionReason::Manual, OpenSpec::Until(until), None, true);
    }

    /// Back to the initial state with a fresh window and the first wait; a transition event
    /// only if the state changes, and a reset event always.
    pub(crate) fn reset(&self) {
        let to = match self.settings.initial_state {
            CircuitState::Open | CircuitState::HalfOpen => CircuitState::Closed,
            s => s,
        };
        if !self.apply(None, to, TransitionReason::Reset, OpenSpec::Now, None, true) {
            // Already in that state: still start afresh.
            let mut control = lock(&self.control);
            control.open_level = 0;
            self.reset_window();
        }
        self.shared.events.publish(CircuitBreakerEvent::Reset { key: self.key.clone() });
    }

    /// The transition itself. `pre` is published just before the transition event, if the
    /// transition happens; `publish` is false only for the initial state.
    pub(super) fn apply(
        &self,
        expected: Option<u64>,
        to: CircuitState,
        reason: TransitionReason,
        open: OpenSpec,
        pre: Option<CircuitBreakerEvent>,
        publish: bool,
    ) -> bool {
        let (from, new_word, open_until, half_open_until) = {
            let mut control = lock(&self.control);
            let word = self.word();
            if expected.is_some_and(|e| e != word) {
                return false;
            }
            let from = state_of(word);
            // A manual move to the state the breaker is already in is no transition
            // (Resilience4j publishes nothing either) - except re-opening by hand for
            // another time, which moves the deadline silently.
            if expected.is_none() && from == to && !matches!(open, OpenSpec::Until(_)) {
                return false;
            }
            // The period ends here: so does its timer.
            #[cfg(not(loom))]
            if let Some(timer) = control.timer.take() {
                timer.abort();
            }
            let gen = gen_of(word).wrapping_add(1) & (u64::MAX >> 8);
            let now = self.now_nanos();
            let mut open_until = None;
            let mut half_open_until = None;
            match to {
                CircuitState::Open => {
                    let (start, wait) = match (open, reason) {
                        (OpenSpec::Until(until), _) => (now, until.saturating_sub(now)),
                        (spec, TransitionReason::RetryAfter { wait }) => (start_of(spec, now), nanos(wait)),
                        (spec, _) => {
                            let wait = self.settings.wait_for(control.open_level);
                            control.open_level = control.open_level.saturating_add(1);
                            (start_of(spec, now), nanos(wait))
                        }
                    };
                    let until = start.saturating_add(wait);
                    self.open_until.store(until, Ordering::Release);
                    self.last_wait.store(wait.max(MIN_HINT), Ordering::Release);
                    open_until = Some(until);
                }
                CircuitState::HalfOpen => {
                    self.trials.reset(gen as u16);
                    let max = nanos(self.settings.max_wait_in_half_open);
                    let until = now.saturating_add(max);
                    self.half_open_until.store(until, Ordering::Release);
                    half_open_until = Some(until);
                }
                CircuitState::Closed | CircuitState::MetricsOnly => {
                    self.reset_window();
                    // Closing starts the exponential wait over, however the breaker closed
                    // (as Resilience4j and Polly).
                    control.open_level = 0;
                }
                CircuitState::ForcedOpen | CircuitState::Disabled => {}
            }
            let new_word = pack(gen, to);
            self.rejected_in_state.store(0, Ordering::Relaxed);
            self.exceeded_published.store(0, Ordering::Relaxed);
            self.hot.state.store(new_word, Ordering::Release);
            (from, new_word, open_until, half_open_until)
        };
        // Side effects after the lock: listeners may call the handle.
        if to == CircuitState::Open && !matches!(reason, TransitionReason::Manual) {
            self.counters.opened.increment();
        }
        if from.rejects() != to.rejects() {
            self.shared.open_breakers.add(if to.rejects() { 1 } else { -1 });
        }
        if let Some(g) = &self.state_gauge {
            g.set(usize::from(to.code()));
        }
        // A period without an end (a wait saturated to "never", `Duration::MAX`) needs no
        // timer: one would sleep for ever, one more per period.
        if let (Some(until), true) = (open_until, self.settings.auto_half_open) {
            if !self.never(until) {
                self.schedule_half_open(new_word, until);
            }
        }
        if let (Some(until), true) = (half_open_until, self.settings.auto_half_open) {
            if !self.never(until) {
                self.schedule_half_open_timeout(new_word, until);
            }
        }
        if publish && from != to {
            if let Some(event) = pre {
                self.shared.events.publish(event);
            }
            self.shared.events.publish(CircuitBreakerEvent::StateTransition {
                from,
                to,
                reason,
                key: self.key.clone(),
            });
        }
        true
    }

    /// Whether `until` (nanoseconds since the epoch) is "never": at least
    /// [`FAR_FUTURE`](palisade_core::time::FAR_FUTURE) away, where saturated waits end.
    fn never(&self, until: u64) -> bool {
        until.saturating_sub(self.now_nanos()) >= nanos(palisade_core::time::FAR_FUTURE)
    }

    /// Keeps `timer` as the timer of period `word` (ended when the breaker leaves it), or
    /// ends it at once if the breaker already left that period.
    #[cfg(not(loom))]
    fn keep_timer(&self, word: u64, timer: &tokio::task::JoinHandle<()>) {
        let mut control = lock(&self.control);
        if self.word() == word {
            if let Some(old) = control.timer.replace(timer.abort_handle()) {
                old.abort();
            }
        } else {
            timer.abort();
        }
    }

    /// Moves the breaker to half-open at `until`, on a timer task, if it is still in the
    /// open period `word` then.
    pub(super) fn schedule_half_open(&self, word: u64, until: u64) {
        self.schedule(word, until, move |core| {
            core.transition(Some(word), CircuitState::HalfOpen, TransitionReason::WaitElapsed);
        });
    }

    /// Re-opens the breaker at `until` (the end of the longest half-open period), on a timer
    /// task, if it is still in the half-open period `word` then: the trials did not decide
    /// in time. As Resilience4j's `HalfOpenState`, which schedules `toOpenState` after
    /// `maxWaitDurationInHalfOpenState`; here only with `automatic_transition_to_half_open`
    /// (without it, the first call after the deadline moves the breaker, as from the
    /// deadline, so that an idle breaker costs no timer).
    fn schedule_half_open_timeout(&self, word: u64, until: u64) {
        self.schedule(word, until, move |core| core.half_open_timed_out(word, until));
    }

    /// Runs `then` on the breaker at `until`, on a timer task kept as the timer of the
    /// period `word` (aborted when that period ends), if the breaker still exists then.
    fn schedule(&self, word: u64, until: u64, then: impl FnOnce(&Self) + Send + 'static) {
        #[cfg(not(loom))]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let me = self.me.clone();
            let at = self.instant_at(until);
            let timer = runtime.spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(core) = me.upgrade() {
                    then(&core);
                }
            });
            self.keep_timer(word, &timer);
        }
        #[cfg(loom)]
        let _ = (word, until, &self.me, then);
    }

    /// The half-open period `word`, which ended at `until`, saw its trials not decide in
    /// time: open again, as from that deadline, so that a breaker nobody called for long
    /// goes on to new trials.
    pub(super) fn half_open_timed_out(&self, word: u64, until: u64) {
        self.apply(
            Some(word),
            CircuitState::Open,
            TransitionReason::HalfOpenTimedOut,
            OpenSpec::From(until),
            None,
            true,
        );
    }
}
