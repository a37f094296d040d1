//! The breaker's state machine.
//!
//! The state lives in one atomic word, `generation << 8 | state`. Every transition bumps the
//! generation, under a mutex that only transitions take; calls read the word with one load.
//! A call remembers the generation that admitted it and its result counts only if the
//! breaker is still in that generation: a call admitted while closed that ends after the
//! breaker opened says nothing about the new period.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use palisade_core::classify::{Classification, Outcome};
use palisade_core::event::EventBus;
use palisade_core::keyed::Forget;
use palisade_core::metric::{Counter, Gauge};
use tokio::time::Instant;

use crate::clock::Epoch;
use crate::config::{Settings, Trip, WindowKind};
use crate::event::{CircuitBreakerEvent, TransitionReason};
use crate::sync::{lock, stripe, stripes, AtomicU64, CachePadded, Mutex, Ordering, StripedCounter};
use crate::window::{Aggregate, Sample, TrialSlots, TrialTally, Window};

/// The state of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum State {
    /// Calls pass and their results are recorded.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A limited number of trial calls pass; their results close or re-open the breaker.
    HalfOpen,
    /// Set by hand: every call is rejected until another manual state.
    ForcedOpen,
    /// Set by hand: every call passes and nothing is recorded.
    Disabled,
    /// Set by hand: every call passes; results are recorded but never open the breaker.
    MetricsOnly,
}

impl State {
    /// A short stable name (`"closed"`, `"open"`, `"half_open"`, `"forced_open"`,
    /// `"disabled"`, `"metrics_only"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }

    /// The value of the `palisade_circuit_breaker_state` gauge: 0 closed, 1 open,
    /// 2 half-open, 3 forced open, 4 disabled, 5 metrics-only.
    pub const fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
            Self::MetricsOnly => 5,
        }
    }

    const fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            4 => Self::Disabled,
            5 => Self::MetricsOnly,
            _ => Self::Closed,
        }
    }

    /// `true` for the states that reject calls: open, half-open (beyond its trials),
    /// forced open.
    pub const fn rejects(self) -> bool {
        matches!(self, Self::Open | Self::HalfOpen | Self::ForcedOpen)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const fn pack(gen: u64, state: State) -> u64 {
    (gen << 8) | state.code() as u64
}

const fn state_of(word: u64) -> State {
    State::from_code(word & 0xFF)
}

const fn gen_of(word: u64) -> u64 {
    word >> 8
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What every breaker of one layer shares: the event bus and the open-breakers gauge.
#[derive(Debug)]
pub(crate) struct LayerShared {
    pub(crate) events: EventBus<CircuitBreakerEvent>,
    open_breakers: Gauge,
}

impl LayerShared {
    pub(crate) fn new(name: &str, events: EventBus<CircuitBreakerEvent>) -> Self {
        Self { events, open_breakers: Gauge::new("palisade_circuit_breaker_open_breakers", name) }
    }
}

#[derive(Debug)]
struct Counters {
    #[cfg(feature = "metrics")]
    successes: Counter,
    failures: Counter,
    slow: Counter,
    ignored: Counter,
    rejected: Counter,
    opened: Counter,
}

impl Counters {
    fn new(name: &str) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            successes: Counter::new("palisade_circuit_breaker_successes_total", name),
            failures: Counter::new("palisade_circuit_breaker_failures_total", name),
            slow: Counter::new("palisade_circuit_breaker_slow_calls_total", name),
            ignored: Counter::new("palisade_circuit_breaker_ignored_total", name),
            rejected: Counter::new("palisade_circuit_breaker_rejected_total", name),
            opened: Counter::new("palisade_circuit_breaker_opened_total", name),
        }
    }
}

#[derive(Debug)]
struct Control {
    /// Times opened since the breaker last closed (exponent of the wait).
    open_level: u32,
}

/// How a call was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed or metrics-only in generation `gen`: the result is recorded in the window.
    Record { gen: u64 },
    /// A half-open trial of generation `gen`, holding a slot.
    Trial { gen: u64 },
    /// Disabled: nothing is recorded.
    Pass,
}

/// Why a call was not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) retry_after: Duration,
    /// Forced open by hand.
    pub(crate) isolated: bool,
}

/// When an open period starts, or ends.
#[derive(Clone, Copy, Debug)]
enum OpenSpec {
    /// Now, for the next wait.
    Now,
    /// At this time (nanoseconds since the epoch), for the next wait.
    From(u64),
    /// Until this time, whatever the wait (by hand).
    Until(u64),
}

/// A point-in-time view of one breaker, from its handle.
///
/// While half-open, the window fields show the trials of this half-open period (as
/// Resilience4j, whose metrics start afresh on entering half-open): `window_calls` are the
/// trials that ended, `window_failures` the failed or slow ones.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current state.
    pub state: State,
    /// Failures / calls in the window, once it holds the minimum number of calls (half-open:
    /// failed / ended trials, once one ended).
    pub failure_rate: Option<f64>,
    /// Slow calls / calls in the window, once it holds the minimum number of calls (and
    /// slow calls are detected). Not kept apart while half-open (a slow trial is a failed
    /// one).
    pub slow_call_rate: Option<f64>,
    /// Calls in the window (0 without a window: consecutive mode).
    pub window_calls: u64,
    /// Failed calls in the window.
    pub window_failures: u64,
    /// Slow calls in the window.
    pub window_slow_calls: u64,
    /// Failures in a row (consecutive mode).
    pub consecutive_failures: u64,
    /// Successful calls since the breaker was built.
    pub successes: u64,
    /// Failed calls since the breaker was built.
    pub failures: u64,
    /// Slow calls since the breaker was built.
    pub slow_calls: u64,
    /// Calls classified as neither success nor failure, or dropped before they ended.
    pub ignored: u64,
    /// Calls rejected by the breaker since it was built.
    pub rejected: u64,
    /// Calls rejected since the breaker entered its current state (Resilience4j's
    /// `numberOfNotPermittedCalls`, which starts over with each state).
    pub rejected_in_state: u64,
    /// Times the breaker opened (automatically, not by hand).
    pub times_opened: u64,
    /// When open: time until trial calls are let through.
    pub retry_after: Option<Duration>,
    /// When half-open: trial calls in flight.
    pub trials_in_flight: u16,
    /// When half-open: trial calls that succeeded.
    pub trial_successes: u16,
    /// When half-open: trial calls that failed.
    pub trial_failures: u16,
}

/// The words every call reads, on their own cache line.
#[derive(Debug)]
struct Hot {
    /// `generation << 8 | state`.
    state: AtomicU64,
}

/// One breaker: settings, state word, windows, counters.
pub(crate) struct BreakerCore {
    settings: Arc<Settings>,
    shared: Arc<LayerShared>,
    // Read by every call: kept apart from the lines every call writes (counters, window,
    // the `Arc`'s reference count), so that threads do not steal it from each other.
    hot: CachePadded<Hot>,
    open_until: AtomicU64,
    half_open_until: AtomicU64,
    /// The wait of the last open period, in nanoseconds: the hint while trials decide.
    last_wait: AtomicU64,
    trials: TrialSlots,
    consecutive: AtomicU64,
    window: Option<Window>,
    successes: StripedCounter,
    /// Failures recorded in a count window (whose position counter counts every call).
    window_failures: AtomicU64,
    control: Mutex<Control>,
    epoch: Epoch,
    counters: CachePadded<Counters>,
    rejected_in_state: AtomicU64,
    /// Metrics-only: a threshold-exceeded event was published in this period.
    exceeded_published: AtomicU64,
    key: Option<Arc<str>>,
    state_gauge: Option<Gauge>,
    me: Weak<BreakerCore>,
}

impl fmt::Debug for BreakerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.settings.name)
            .field("key", &self.key)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// A breaker and the classifier that judges its calls.
#[derive(Debug)]
pub(crate) struct Breaker<C> {
    pub(crate) core: Arc<BreakerCore>,
    pub(crate) classifier: C,
}

impl<C> Breaker<C> {
    /// A breaker; `key` is set for the breakers of a keyed layer (they get no state gauge).
    pub(crate) fn new(
        settings: Arc<Settings>,
        shared: Arc<LayerShared>,
        key: Option<Arc<str>>,
        classifier: C,
    ) -> Self {
        // Keyed breakers (one per host, tenant, ...) are many and each less contended: one
        // stripe keeps their memory small.
        let stripes = if key.is_some() { 1 } else { stripes() };
        let window = settings.window.map(|w| match w {
            WindowKind::Count(n) => Window::count(n),
            WindowKind::Time { length, buckets } => Window::time(nanos(length), buckets, stripes),
        });
        let state_gauge = key.is_none().then(|| Gauge::new("palisade_circuit_breaker_state", &settings.name));
        let counters = Counters::new(&settings.name);
        let initial = settings.initial_state;
        let core = Arc::new_cyclic(|me| BreakerCore {
            hot: CachePadded(Hot { state: AtomicU64::new(pack(0, State::Closed)) }),
            open_until: AtomicU64::new(0),
            half_open_until: AtomicU64::new(u64::MAX),
            last_wait: AtomicU64::new(nanos(settings.wait)),
            trials: TrialSlots::new(),
            consecutive: AtomicU64::new(0),
            window,
            successes: StripedCounter::new(stripes),
            window_failures: AtomicU64::new(0),
            control: Mutex::new(Control { open_level: 0 }),
            epoch: settings.clock.epoch(),
            counters: CachePadded(counters),
            rejected_in_state: AtomicU64::new(0),
            exceeded_published: AtomicU64::new(0),
            key,
            state_gauge,
            me: me.clone(),
            settings,
            shared,
        });
        if initial != State::Closed {
            core.enter(initial);
        }
        Self { core, classifier }
    }
}

/// A keyed layer's breaker may be forgotten when a fresh one would make exactly the same
/// decisions: it is in the configured initial state (closed by default) by itself, the
/// exponential wait is at its start, no failure is counted in a row, and its window is
/// empty (a time window empties as its calls age out; a count window never does, so a key
/// with a count window is kept once it recorded a call). The map also requires that no call
/// is in flight (no response future holds the breaker) and no handle to it is held.
impl<C> Forget for Breaker<C> {
    type Now = Instant;

    fn can_forget(&self, now: Instant) -> bool {
        self.core.can_forget(now)
    }
}

// === impl BreakerCore ===

impl BreakerCore {
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.settings.name
    }

    pub(crate) fn key(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }

    pub(crate) fn events(&self) -> &EventBus<CircuitBreakerEvent> {
        &self.shared.events
    }

    #[inline]
    pub(crate) fn measures(&self) -> bool {
        self.settings.measure
    }

    #[inline]
    fn word(&self) -> u64 {
        self.hot.state.load(Ordering::Acquire)
    }

    pub(crate) fn state(&self) -> State {
        state_of(self.word())
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        self.epoch.now()
    }

    #[inline]
    fn nanos_at(&self, at: Instant) -> u64 {
        self.epoch.nanos(at)
    }

    #[cfg_attr(loom, allow(dead_code))] // the half-open timer is not built under loom
    fn instant_at(&self, nanos: u64) -> Instant {
        self.epoch.instant(nanos)
    }

    /// Puts a fresh breaker in its initial state (no event: nothing changed for anyone yet).
    fn enter(&self, to: State) {
        let _ = self.apply(Some(self.word()), to, TransitionReason::Manual, OpenSpec::Now, None, false);
    }

    fn can_forget(&self, now: Instant) -> bool {
        let word = self.word();
        let state = state_of(word);
        if state != self.settings.initial_state
            || !matches!(state, State::Closed | State::MetricsOnly | State::Disabled | State::ForcedOpen)
            || self.consecutive.load(Ordering::Acquire) != 0
            || lock(&self.control).open_level != 0
        {
            return false;
        }
        match &self.window {
            Some(w) if state != State::Disabled => w.snapshot(self.epoch.at_end(Some(now))).calls == 0,
            _ => true,
        }
    }

    /// Lets a call through, or says how long until the breaker may let one through.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Admission, Refusal> {
        // Each turn either returns or follows a transition; six turns are plenty (half-open
        // timed out -> open -> half-open).
        for _ in 0..6 {
            let word = self.word();
            let gen = gen_of(word);
            match state_of(word) {
                State::Closed | State::MetricsOnly => return Ok(Admission::Record { gen }),
                State::Disabled => return Ok(Admission::Pass),
                State::ForcedOpen => {
                    return Err(Refusal { retry_after: self.settings.wait, isolated: true });
                }
                State::Open => {
                    let until = self.open_until.load(Ordering::Acquire);
                    let now = self.now_nanos();
                    if now < until {
                        return Err(Refusal {
                            retry_after: Duration::from_nanos(until - now),
                            isolated: false,
                        });
                    }
                    self.transition(Some(word), State::HalfOpen, TransitionReason::WaitElapsed);
                }
                State::HalfOpen => {
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
                        // The trials did not decide in time: open, as from the deadline, so
                        // that a breaker nobody called for long goes on to new trials.
                        self.apply(
                            Some(word),
                            State::Open,
                            TransitionReason::HalfOpenTimedOut,
                            OpenSpec::From(until),
                            None,
                            true,
                        );
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
        if self.shared.events.is_observed() {
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
    fn record_closed(
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
            State::Closed => {
                if let Some(wait) = hint {
                    self.transition(Some(word), State::Open, TransitionReason::RetryAfter { wait });
                } else if let Some(reason) = self.trip_reason(consecutive, aggregate) {
                    let exceeded = self.exceeded_event(reason);
                    self.apply(Some(word), State::Open, reason, OpenSpec::Now, exceeded, true);
                }
            }
            State::MetricsOnly => {
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
    fn exceeded_event(&self, reason: TransitionReason) -> Option<CircuitBreakerEvent> {
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
    fn trip_reason(&self, consecutive: u64, aggregate: Option<Aggregate>) -> Option<TransitionReason> {
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

    fn record_trial(&self, gen: u64, failed: Option<bool>, hint: Option<Duration>) {
        let Some(tally) = self.trials.complete(gen as u16, failed) else {
            return;
        };
        if failed.is_none() {
            return;
        }
        let word = self.word();
        if gen_of(word) != gen || state_of(word) != State::HalfOpen {
            return;
        }
        let s = &self.settings;
        if let Some(wait) = hint {
            self.transition(Some(word), State::Open, TransitionReason::RetryAfter { wait });
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
                    State::Open,
                    TransitionReason::TrialsFailed { failures: tally.failures },
                );
            } else {
                self.transition(
                    Some(word),
                    State::Closed,
                    TransitionReason::TrialsSucceeded { successes: tally.successes },
                );
            }
        } else if failed_enough {
            self.transition(
                Some(word),
                State::Open,
                TransitionReason::TrialsFailed { failures: tally.failures },
            );
        } else if tally.successes > s.half_open_trials - s.half_open_failures_to_open {
            self.transition(
                Some(word),
                State::Closed,
                TransitionReason::TrialsSucceeded { successes: tally.successes },
            );
        }
    }

    fn reset_window(&self) {
        self.consecutive.store(0, Ordering::Release);
        if let Some(w) = &self.window {
            w.reset();
        }
    }

    /// Moves to `to` if the state word still is `expected` (any word for `None`). Returns
    /// whether this call made the transition.
    pub(crate) fn transition(&self, expected: Option<u64>, to: State, reason: TransitionReason) -> bool {
        self.apply(expected, to, reason, OpenSpec::Now, None, true)
    }

    /// Opens by hand until `until` (then half-open as usual), without touching the wait level.
    pub(crate) fn open_until(&self, until: Instant) {
        let until = self.nanos_at(until).max(1);
        self.apply(None, State::Open, TransitionReason::Manual, OpenSpec::Until(until), None, true);
    }

    /// Back to the initial state with a fresh window and the first wait; a transition event
    /// only if the state changes, and a reset event always.
    pub(crate) fn reset(&self) {
        let to = match self.settings.initial_state {
            State::Open | State::HalfOpen => State::Closed,
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
    fn apply(
        &self,
        expected: Option<u64>,
        to: State,
        reason: TransitionReason,
        open: OpenSpec,
        pre: Option<CircuitBreakerEvent>,
        publish: bool,
    ) -> bool {
        let (from, new_word, open_until) = {
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
            let gen = gen_of(word).wrapping_add(1) & (u64::MAX >> 8);
            let now = self.now_nanos();
            let mut open_until = None;
            match to {
                State::Open => {
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
                State::HalfOpen => {
                    self.trials.reset(gen as u16);
                    let max = nanos(self.settings.max_wait_in_half_open);
                    self.half_open_until.store(now.saturating_add(max), Ordering::Release);
                }
                State::Closed | State::MetricsOnly => {
                    self.reset_window();
                    // Closing starts the exponential wait over, however the breaker closed
                    // (as Resilience4j and Polly).
                    control.open_level = 0;
                }
                State::ForcedOpen | State::Disabled => {}
            }
            let new_word = pack(gen, to);
            self.rejected_in_state.store(0, Ordering::Relaxed);
            self.exceeded_published.store(0, Ordering::Relaxed);
            self.hot.state.store(new_word, Ordering::Release);
            (from, new_word, open_until)
        };
        // Side effects after the lock: listeners may call the handle.
        if to == State::Open && !matches!(reason, TransitionReason::Manual) {
            self.counters.opened.increment();
        }
        if from.rejects() != to.rejects() {
            self.shared.open_breakers.add(if to.rejects() { 1 } else { -1 });
        }
        if let Some(g) = &self.state_gauge {
            g.set(i64::from(to.code()));
        }
        if let (Some(until), true) = (open_until, self.settings.auto_half_open) {
            self.schedule_half_open(new_word, until);
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

    /// Moves the breaker to half-open at `until`, on a timer task, if it is still in the
    /// open period `word` then.
    fn schedule_half_open(&self, word: u64, until: u64) {
        #[cfg(not(loom))]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let me = self.me.clone();
            let at = self.instant_at(until);
            drop(runtime.spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(core) = me.upgrade() {
                    core.transition(Some(word), State::HalfOpen, TransitionReason::WaitElapsed);
                }
            }));
        }
        #[cfg(loom)]
        let _ = (word, until, &self.me);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let word = self.word();
        let state = state_of(word);
        let now = self.now_nanos();
        let tally = if state == State::HalfOpen {
            self.trials.tally(gen_of(word) as u16)
        } else {
            TrialTally { successes: 0, failures: 0, in_flight: 0 }
        };
        let (a, failure_rate, slow_call_rate) = if state == State::HalfOpen {
            // Half-open's own numbers: its trials.
            let ended = u64::from(tally.successes) + u64::from(tally.failures);
            let a = Aggregate { calls: ended, failures: u64::from(tally.failures), slow: 0 };
            (a, (ended > 0).then(|| a.failures as f64 / ended as f64), None)
        } else {
            let a = self.window.as_ref().map(|w| w.snapshot(now)).unwrap_or_default();
            let judged = self.window.is_some() && a.calls >= self.settings.minimum_calls;
            let slow = (judged && self.settings.slow.is_some()).then(|| a.slow as f64 / a.calls as f64);
            (a, judged.then(|| a.failures as f64 / a.calls as f64), slow)
        };
        let retry_after = match state {
            State::Open => {
                Some(Duration::from_nanos(self.open_until.load(Ordering::Acquire).saturating_sub(now)))
            }
            State::ForcedOpen => Some(self.settings.wait),
            _ => None,
        };
        Snapshot {
            state,
            failure_rate,
            slow_call_rate,
            window_calls: a.calls,
            window_failures: a.failures,
            window_slow_calls: a.slow,
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            // Plus the successes the window counted itself.
            successes: self.successes.get().wrapping_add(
                self.window
                    .as_ref()
                    .map_or(0, |w| w.successes_recorded(self.window_failures.load(Ordering::Relaxed))),
            ),
            failures: self.counters.failures.get(),
            slow_calls: self.counters.slow.get(),
            ignored: self.counters.ignored.get(),
            rejected: self.counters.rejected.get(),
            rejected_in_state: self.rejected_in_state.load(Ordering::Relaxed),
            times_opened: self.counters.opened.get(),
            retry_after,
            trials_in_flight: tally.in_flight,
            trial_successes: tally.successes,
            trial_failures: tally.failures,
        }
    }
}

/// The smallest hint a rejection gives (1 ms): never zero.
const MIN_HINT: u64 = 1_000_000;

fn start_of(spec: OpenSpec, now: u64) -> u64 {
    match spec {
        OpenSpec::From(at) => at.min(now),
        OpenSpec::Now | OpenSpec::Until(_) => now,
    }
}

/// Gives the breaker behind a breaker-with-classifier, whatever the classifier.
pub(crate) trait CoreAccess: Send + Sync {
    fn core(&self) -> &BreakerCore;
}

impl<C: Send + Sync> CoreAccess for Breaker<C> {
    fn core(&self) -> &BreakerCore {
        &self.core
    }
}

// === impl Striped ===

/// A reference to a breaker held by the calls of one stripe; on its own cache lines.
#[repr(align(128))]
pub(crate) struct StripeRef<C> {
    breaker: Arc<Breaker<C>>,
    /// This reference's stripe: the calls holding it count in that stripe, without looking
    /// up the thread's stripe again.
    stripe: usize,
}

/// A breaker and one reference to it per stripe. Every call in flight holds a counted
/// reference to its breaker; taking it from the calling thread's stripe makes threads count
/// on different cache lines instead of all on the breaker's own reference count, the one
/// line every call would otherwise write.
pub(crate) struct Striped<C> {
    pub(crate) breaker: Arc<Breaker<C>>,
    refs: Box<[Arc<StripeRef<C>>]>,
}

impl<C> Striped<C> {
    pub(crate) fn new(breaker: Arc<Breaker<C>>) -> Self {
        let refs = (0..stripes().next_power_of_two())
            .map(|stripe| Arc::new(StripeRef { breaker: breaker.clone(), stripe }))
            .collect();
        Self { breaker, refs }
    }

    /// A counted reference for a call made on this thread.
    #[inline]
    pub(crate) fn hold(&self) -> Holder<C> {
        Holder::Striped(self.refs[stripe() & (self.refs.len() - 1)].clone())
    }
}

/// What a call in flight holds its breaker by.
pub(crate) enum Holder<C> {
    /// The breaker itself (keyed breakers: the key map counts the calls in flight).
    Direct(Arc<Breaker<C>>),
    /// A stripe's reference.
    Striped(Arc<StripeRef<C>>),
}

impl<C> Holder<C> {
    /// The stripe the call counts in (0 for a keyed breaker, which has one).
    #[inline]
    fn stripe(&self) -> usize {
        match self {
            Self::Direct(_) => 0,
            Self::Striped(r) => r.stripe,
        }
    }
}

impl<C> std::ops::Deref for Holder<C> {
    type Target = Breaker<C>;

    #[inline]
    fn deref(&self) -> &Breaker<C> {
        match self {
            Self::Direct(b) => b,
            Self::Striped(r) => &r.breaker,
        }
    }
}

// === impl CallGuard ===

/// A call in flight: records its result, or gives back its trial slot if it never ends
/// (the response future was dropped, or the inner future panicked).
pub(crate) struct CallGuard<C> {
    breaker: Holder<C>,
    admission: Admission,
    start: Option<Instant>,
}

impl<C> fmt::Debug for CallGuard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard").field("admission", &self.admission).finish_non_exhaustive()
    }
}

impl<C> CallGuard<C> {
    #[inline]
    pub(crate) fn new(breaker: Holder<C>, admission: Admission) -> Self {
        let start = (breaker.core.measures() && admission != Admission::Pass).then(Instant::now);
        Self { breaker, admission, start }
    }

    /// Classifies and records `result` — or, when its outcome comes at the end of its
    /// response body (a gRPC stream: status in the trailers), moves into the body and records
    /// it there ([`eos`](palisade_core::classify::eos)); a body dropped before its end drops
    /// this guard: ignored, a trial slot given back.
    #[inline]
    pub(crate) fn finish<T, E>(mut self, result: &mut Result<T, E>)
    where
        C: palisade_core::Classify<T, E> + Send + Sync + 'static,
    {
        if self.admission == Admission::Pass {
            return;
        }
        if let Some(deferral) = self.breaker.classifier.defer_eos(result) {
            deferral.attach(move |eos: palisade_core::classify::eos::Eos<'_>| self.finish_eos(&eos));
            return;
        }
        let admission = std::mem::replace(&mut self.admission, Admission::Pass);
        let (verdict, timing) = match self.start {
            Some(start) => {
                let end = Instant::now();
                let elapsed = end.saturating_duration_since(start);
                (self.breaker.classifier.classify_timed(result, elapsed), Some((end, elapsed)))
            }
            None => (self.breaker.classifier.classify(result), None),
        };
        self.breaker.core.record(admission, verdict, timing, self.breaker.stripe());
    }

    /// Records a deferred call at the end of its response body, timed to that end.
    fn finish_eos(mut self, eos: &palisade_core::classify::eos::Eos<'_>) {
        let admission = std::mem::replace(&mut self.admission, Admission::Pass);
        let (verdict, timing) = match self.start {
            Some(start) => {
                let end = Instant::now();
                let elapsed = end.saturating_duration_since(start);
                (eos.classify_timed(elapsed), Some((end, elapsed)))
            }
            None => (eos.classify(), None),
        };
        self.breaker.core.record(admission, verdict, timing, self.breaker.stripe());
    }
}

impl<C> Drop for CallGuard<C> {
    fn drop(&mut self) {
        match self.admission {
            Admission::Pass => {}
            Admission::Record { .. } => self.breaker.core.counters.ignored.increment(),
            Admission::Trial { gen } => {
                self.breaker.core.counters.ignored.increment();
                self.breaker.core.release_trial(gen);
            }
        }
    }
}
