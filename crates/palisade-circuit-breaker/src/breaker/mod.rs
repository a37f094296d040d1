//! One breaker: its settings, state word, windows and counters, and the calls in flight.
//!
//! Split by concern: [`record`] admits calls and records their results, [`transition`]
//! moves the state, [`call`] is what a call in flight holds.

mod call;
mod record;
mod transition;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use palisade_core::__private::{Counter, Forget, Gauge, StateGauge};
use palisade_core::clock::Epoch;
use palisade_core::event::EventBus;
use tokio::time::Instant;

use crate::event::{CircuitBreakerEvent, TransitionReason};
use crate::handle::CircuitBreakerSnapshot;
use crate::settings::{Settings, WindowKind};
use crate::state::{gen_of, pack, state_of, CircuitState};
use crate::sync::{lock, stripes, AtomicU64, CachePadded, Mutex, Ordering, StripedCounter};
use crate::window::{Aggregate, TrialSlots, TrialTally, Window};

pub(crate) use call::{CallGuard, Holder, Striped};

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What every breaker of one layer shares: the event bus and the open-breakers gauge.
#[derive(Debug)]
pub(crate) struct LayerShared {
    pub(crate) events: EventBus<CircuitBreakerEvent>,
    open_breakers: Gauge,
    /// A listener is registered: every recorded call is an event for it.
    listened: AtomicBool,
}

impl LayerShared {
    /// `listened`: `events` was made with listeners.
    pub(crate) fn new(name: &str, events: EventBus<CircuitBreakerEvent>, listened: bool) -> Self {
        Self {
            events,
            open_breakers: Gauge::new("palisade_circuit_breaker_open_breakers", name),
            listened: AtomicBool::new(listened),
        }
    }

    /// Registers a listener (already guarded against panics).
    pub(crate) fn listen(&self, listener: impl Fn(&CircuitBreakerEvent) + Send + Sync + 'static) {
        self.events.subscribe(listener);
        self.listened.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a recorded call's event (level TRACE) reaches anyone: a listener, or
    /// `tracing` at TRACE. Checked on every call; the bus's own check answers yes to any
    /// subscriber at all.
    #[inline]
    pub(crate) fn records_observed(&self) -> bool {
        self.listened.load(std::sync::atomic::Ordering::Relaxed)
            || tracing::enabled!(target: "palisade", tracing::Level::TRACE)
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
            successes: Counter::labeled("palisade_circuit_breaker_calls_total", name, ("outcome", "success")),
            failures: Counter::labeled("palisade_circuit_breaker_calls_total", name, ("outcome", "failure")),
            slow: Counter::new("palisade_circuit_breaker_slow_calls_total", name),
            ignored: Counter::labeled("palisade_circuit_breaker_calls_total", name, ("outcome", "ignored")),
            rejected: Counter::labeled("palisade_circuit_breaker_calls_total", name, ("outcome", "rejected")),
            opened: Counter::new("palisade_circuit_breaker_opened_total", name),
        }
    }
}

#[derive(Debug)]
struct Control {
    /// Times opened since the breaker last closed (exponent of the wait).
    open_level: u32,
    /// The timer of the current open or half-open period (automatic transitions): ended
    /// when the breaker leaves that period or is dropped, as Resilience4j cancels its
    /// scheduled transition, so that no timer outlives its period.
    #[cfg(not(loom))]
    timer: Option<tokio::task::AbortHandle>,
}

impl Drop for BreakerCore {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        if let Some(timer) = lock(&self.control).timer.take() {
            timer.abort();
        }
    }
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
    state_gauge: Option<StateGauge>,
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
        // One series per state (`state="open"` 1, the others 0), in the order of `CircuitState::code`.
        let state_gauge = key.is_none().then(|| {
            StateGauge::new(
                "palisade_circuit_breaker_state",
                &settings.name,
                "state",
                &["closed", "open", "half_open", "forced_open", "disabled", "metrics_only"],
                0,
            )
        });
        let counters = Counters::new(&settings.name);
        let initial = settings.initial_state;
        let core = Arc::new_cyclic(|me| BreakerCore {
            hot: CachePadded(Hot { state: AtomicU64::new(pack(0, CircuitState::Closed)) }),
            open_until: AtomicU64::new(0),
            half_open_until: AtomicU64::new(u64::MAX),
            last_wait: AtomicU64::new(nanos(settings.wait)),
            trials: TrialSlots::new(),
            consecutive: AtomicU64::new(0),
            window,
            successes: StripedCounter::new(stripes),
            window_failures: AtomicU64::new(0),
            control: Mutex::new(Control {
                open_level: 0,
                #[cfg(not(loom))]
                timer: None,
            }),
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
        if initial != CircuitState::Closed {
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

    pub(crate) fn shared(&self) -> &LayerShared {
        &self.shared
    }

    #[inline]
    pub(crate) fn measures(&self) -> bool {
        self.settings.measure
    }

    #[inline]
    fn word(&self) -> u64 {
        self.hot.state.load(Ordering::Acquire)
    }

    pub(crate) fn state(&self) -> CircuitState {
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
    fn enter(&self, to: CircuitState) {
        let _ = self.apply(Some(self.word()), to, TransitionReason::Manual, OpenSpec::Now, None, false);
    }

    fn can_forget(&self, now: Instant) -> bool {
        let word = self.word();
        let state = state_of(word);
        if state != self.settings.initial_state
            || !matches!(
                state,
                CircuitState::Closed
                    | CircuitState::MetricsOnly
                    | CircuitState::Disabled
                    | CircuitState::ForcedOpen
            )
            || self.consecutive.load(Ordering::Acquire) != 0
            || lock(&self.control).open_level != 0
        {
            return false;
        }
        match &self.window {
            Some(w) if state != CircuitState::Disabled => w.snapshot(self.epoch.at_end(Some(now))).calls == 0,
            _ => true,
        }
    }

    pub(crate) fn snapshot(&self) -> CircuitBreakerSnapshot {
        let word = self.word();
        let state = state_of(word);
        let now = self.now_nanos();
        let tally = if state == CircuitState::HalfOpen {
            self.trials.tally(gen_of(word) as u16)
        } else {
            TrialTally { successes: 0, failures: 0, in_flight: 0 }
        };
        let (a, failure_rate, slow_call_rate) = if state == CircuitState::HalfOpen {
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
            CircuitState::Open => {
                Some(Duration::from_nanos(self.open_until.load(Ordering::Acquire).saturating_sub(now)))
            }
            CircuitState::ForcedOpen => Some(self.settings.wait),
            _ => None,
        };
        CircuitBreakerSnapshot {
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
