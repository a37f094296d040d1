//! The builder, its defaults and its validation (and the `serde` config).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::DefaultClassifier;
use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ratio, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::keyed::KeyedMap;
use palisade_core::time::mul_f64_saturating;

use crate::clock::Clock;
use crate::event::{guarded, CircuitBreakerEvent};
use crate::layer::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
use crate::state::{Breaker, LayerShared, State};
use crate::window::MAX_COUNT_WINDOW;

pub(crate) const PATTERN: &str = "circuit_breaker";

/// What opens a closed breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Trip {
    /// `n` failures in a row.
    Consecutive(u32),
    /// `n` failures within the time window, whatever the number of successes.
    FailureCount(u32),
    /// failures / calls >= rate over the window, once `minimum_calls` calls are in it.
    FailureRate(f64),
}

/// The window the rates are computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowKind {
    Count(u32),
    Time { length: Duration, buckets: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SlowCalls {
    pub(crate) threshold: Duration,
    pub(crate) rate: f64,
}

/// Validated settings shared by a layer's breakers.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) name: Arc<str>,
    pub(crate) trip: Trip,
    /// `None` only in consecutive mode without slow-call detection.
    pub(crate) window: Option<WindowKind>,
    pub(crate) minimum_calls: u64,
    pub(crate) slow: Option<SlowCalls>,
    pub(crate) wait: Duration,
    pub(crate) wait_multiplier: f64,
    pub(crate) max_wait: Duration,
    pub(crate) half_open_trials: u16,
    /// Failed trials that re-open a half-open breaker.
    pub(crate) half_open_failures_to_open: u16,
    pub(crate) retry_after_cap: Option<Duration>,
    pub(crate) measure: bool,
    /// Longest half-open period before the breaker re-opens.
    pub(crate) max_wait_in_half_open: Duration,
    /// Judge the trials only once all of them ended (Resilience4j).
    pub(crate) wait_for_all_trials: bool,
    /// Move from open to half-open when the wait ends, on a timer.
    pub(crate) auto_half_open: bool,
    /// The state a breaker starts in.
    pub(crate) initial_state: State,
    /// Where the breaker reads the time.
    pub(crate) clock: Clock,
}

impl Settings {
    /// How long the breaker stays open the `level`-th time in a row it opens (0-based).
    pub(crate) fn wait_for(&self, level: u32) -> Duration {
        if level == 0 || self.wait_multiplier <= 1.0 {
            return self.wait.min(self.max_wait);
        }
        let factor = self.wait_multiplier.powi(level.min(i32::MAX as u32) as i32);
        mul_f64_saturating(self.wait, factor).min(self.max_wait)
    }
}

/// Builds a [`CircuitBreakerLayer`] or a [`KeyedCircuitBreakerLayer`]; see
/// [`CircuitBreakerLayer::builder`].
///
/// # Defaults
///
/// Close to Resilience4j's, so that a configuration ported from it behaves the same:
///
/// | setting | default |
/// |---|---|
/// | mode | [`failure_rate`](Self::failure_rate) 50 % |
/// | window | [`count_window`](Self::count_window) of the last 100 calls |
/// | [`minimum_calls`](Self::minimum_calls) | 100 (never more than a count window's size) |
/// | slow calls | not detected |
/// | [`wait_in_open`](Self::wait_in_open) | 60 s, fixed |
/// | [`half_open_trials`](Self::half_open_trials) | 10, any failed trial re-opens, decided early |
/// | [`max_wait_in_half_open`](Self::max_wait_in_half_open) | 60 s (Resilience4j: unbounded) |
/// | [`automatic_transition_to_half_open`](Self::automatic_transition_to_half_open) | off: the first call after the wait moves it |
/// | [`initial_state`](Self::initial_state) | [`State::Closed`] |
/// | [`open_on_retry_after`](Self::open_on_retry_after) | off |
/// | [`max_keys`](Self::max_keys) (keyed only) | 10 000 |
/// | classifier | [`DefaultClassifier`]: `Err` fails |
pub struct CircuitBreakerLayerBuilder<C = DefaultClassifier> {
    name: Arc<str>,
    trip: Trip,
    window: WindowKind,
    window_set: bool,
    time_window_buckets: u32,
    minimum_calls: u32,
    slow: Option<SlowCalls>,
    wait: Duration,
    wait_multiplier: f64,
    max_wait: Option<Duration>,
    half_open_trials: u32,
    half_open_failure_ratio: Option<f64>,
    retry_after_cap: Option<Duration>,
    measure: bool,
    max_keys: usize,
    max_wait_in_half_open: Duration,
    wait_for_all_trials: bool,
    auto_half_open: bool,
    initial_state: State,
    clock: Clock,
    listeners: Vec<Listener<CircuitBreakerEvent>>,
    classifier: C,
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreakerLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayerBuilder")
            .field("name", &self.name)
            .field("trip", &self.trip)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("slow", &self.slow)
            .field("wait", &self.wait)
            .field("wait_multiplier", &self.wait_multiplier)
            .field("max_wait", &self.max_wait)
            .field("half_open_trials", &self.half_open_trials)
            .field("half_open_failure_ratio", &self.half_open_failure_ratio)
            .field("retry_after_cap", &self.retry_after_cap)
            .field("max_wait_in_half_open", &self.max_wait_in_half_open)
            .field("wait_for_all_trials", &self.wait_for_all_trials)
            .field("auto_half_open", &self.auto_half_open)
            .field("initial_state", &self.initial_state)
            .field("clock", &self.clock)
            .field("listeners", &self.listeners.len())
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl Default for CircuitBreakerLayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CircuitBreakerLayerBuilder {
    /// A builder with the defaults in the table above.
    pub fn new() -> Self {
        Self {
            name: Arc::from(PATTERN),
            trip: Trip::FailureRate(0.5),
            window: WindowKind::Count(100),
            window_set: false,
            time_window_buckets: 10,
            minimum_calls: 100,
            slow: None,
            wait: Duration::from_secs(60),
            wait_multiplier: 1.0,
            max_wait: None,
            half_open_trials: 10,
            half_open_failure_ratio: None,
            retry_after_cap: None,
            measure: false,
            max_keys: 10_000,
            max_wait_in_half_open: Duration::from_secs(60),
            wait_for_all_trials: false,
            auto_half_open: false,
            initial_state: State::Closed,
            clock: Clock::tokio(),
            listeners: Vec::new(),
            classifier: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayerBuilder<C> {
    /// The breaker's name, in rejections, events and metric labels (default
    /// `"circuit_breaker"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Opens after `n` failures in a row (a success resets the count).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.trip = Trip::Consecutive(n);
        self
    }

    /// Opens after `n` failures within the last `within`, however many calls succeeded
    /// ("5 failures per minute"). Sets a [`time_window`](Self::time_window) of `within`.
    pub fn failure_count(mut self, n: u32, within: Duration) -> Self {
        self.trip = Trip::FailureCount(n);
        self.window = WindowKind::Time { length: within, buckets: self.time_window_buckets };
        self.window_set = true;
        self
    }

    /// Opens when failures / calls in the window reaches `rate` (`0.5` = 50 %, the boundary
    /// included), once the window holds [`minimum_calls`](Self::minimum_calls). The default
    /// mode, with rate 0.5.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.trip = Trip::FailureRate(rate);
        self
    }

    /// Rates are computed over the last `calls` calls (default 100; at most 1 048 575).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.window = WindowKind::Count(calls);
        self.window_set = true;
        self
    }

    /// Rates are computed over the calls of the last `length`, kept in buckets of
    /// `length / 10` (see [`time_window_buckets`](Self::time_window_buckets)): a call leaves
    /// the window between 0.9 × `length` and `length` after it ended.
    pub fn time_window(mut self, length: Duration) -> Self {
        self.window = WindowKind::Time { length, buckets: self.time_window_buckets };
        self.window_set = true;
        self
    }

    /// Number of buckets of a time window (default 10, from 1 to 1000). More buckets make
    /// the window's edge sharper and cost memory, not time.
    pub fn time_window_buckets(mut self, buckets: u32) -> Self {
        self.time_window_buckets = buckets;
        if let WindowKind::Time { length, .. } = self.window {
            self.window = WindowKind::Time { length, buckets };
        }
        self
    }

    /// Calls the window must hold before a rate is judged (default 100). For a count window
    /// the effective minimum is at most the window's size.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// A call that takes longer than `threshold` is slow; the breaker opens when slow calls /
    /// calls in the window reaches `rate`, even if they all succeeded. In half-open state a
    /// slow trial counts as a failed one. Enables [`measure_call_duration`](Self::measure_call_duration).
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow = Some(SlowCalls { threshold, rate });
        self
    }

    /// How long the breaker stays open before letting trial calls through (default 60 s).
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self.wait_multiplier = 1.0;
        self.max_wait = None;
        self
    }

    /// The wait in open state starts at `initial` and is multiplied by `multiplier` each
    /// time the breaker re-opens from half-open, up to `max`; it starts over when the
    /// breaker closes.
    pub fn exponential_wait_in_open(mut self, initial: Duration, multiplier: f64, max: Duration) -> Self {
        self.wait = initial;
        self.wait_multiplier = multiplier;
        self.max_wait = Some(max);
        self
    }

    /// Trial calls let through in half-open state (default 10, at most 65 535). Calls
    /// beyond them are rejected until the trials decide.
    pub fn half_open_trials(mut self, n: u32) -> Self {
        self.half_open_trials = n;
        self
    }

    /// Instead of re-opening on the first failed trial, re-opens when failed trials /
    /// [`half_open_trials`](Self::half_open_trials) reaches `ratio` (in `(0, 1]`), and closes
    /// as soon as that can no longer happen.
    pub fn half_open_failure_ratio(mut self, ratio: f64) -> Self {
        self.half_open_failure_ratio = Some(ratio);
        self
    }

    /// A failed call whose classification carries a server retry hint (503 + `Retry-After`,
    /// `RESOURCE_EXHAUSTED` + pushback) opens the breaker for that long, at most `max`.
    pub fn open_on_retry_after(mut self, max: Duration) -> Self {
        self.retry_after_cap = Some(max);
        self
    }

    /// Measure each call's duration and classify with
    /// [`classify_timed`](palisade_core::Classify::classify_timed). On when slow calls are
    /// detected; turn it on if your classifier looks at durations. Off, the pass path reads
    /// no clock in consecutive and count-window modes, and one (when the call ends) with a
    /// time window.
    pub fn measure_call_duration(mut self, on: bool) -> Self {
        self.measure = on;
        self
    }

    /// The longest a breaker stays half-open (default 60 s): if the trials have not decided
    /// by then, it re-opens (for the next wait, as if the trials had failed) and lets new
    /// trials through after that wait. Resilience4j's `maxWaitDurationInHalfOpenState`.
    ///
    /// It is what keeps a trial call that never ends from pinning the breaker half-open:
    /// such a call holds its trial slot as long as its response future lives. Still, put the
    /// timeout **inside** the breaker (`breaker.layer(timeout.layer(svc))`), so that a hung
    /// call fails, counts as a failure and frees its slot. Resilience4j's default is no
    /// bound at all; palisade's is 60 s because a hung trial would otherwise reject every
    /// call forever. `Duration::MAX` means no bound in practice (saturates).
    pub fn max_wait_in_half_open(mut self, max: Duration) -> Self {
        self.max_wait_in_half_open = max;
        self
    }

    /// Judge the half-open trials only once all [`half_open_trials`](Self::half_open_trials)
    /// have ended, as Resilience4j does (default `false`: palisade decides as soon as the
    /// outcome is certain, re-opening on the first failed trial by default).
    ///
    /// With it, the breaker re-opens when failed (or slow) trials / trials reaches the
    /// [`half_open_failure_ratio`](Self::half_open_failure_ratio), or, when that is not set,
    /// the [`failure_rate`](Self::failure_rate) threshold (any failed trial in the
    /// consecutive and count modes); otherwise it closes.
    pub fn wait_for_all_trials(mut self, on: bool) -> Self {
        self.wait_for_all_trials = on;
        self
    }

    /// Move from open to half-open when the wait ends, on a timer, publishing the transition
    /// then (for dashboards), as Resilience4j's `automaticTransitionFromOpenToHalfOpenEnabled`.
    /// Off by default: the first call after the wait moves the breaker, so an idle breaker
    /// costs nothing. The timer is a task on the tokio runtime current when the breaker
    /// opens (none outside a runtime: then the first call moves it as usual); it holds no
    /// reference that keeps the breaker alive.
    pub fn automatic_transition_to_half_open(mut self, on: bool) -> Self {
        self.auto_half_open = on;
        self
    }

    /// The state a breaker starts in (default [`State::Closed`]): e.g.
    /// [`State::ForcedOpen`] to start isolated until an operator closes it, or
    /// [`State::Disabled`]. [`State::Open`] starts open for the first wait, and
    /// [`State::HalfOpen`] starts with trials.
    pub fn initial_state(mut self, state: State) -> Self {
        self.initial_state = state;
        self
    }

    /// Where the breaker reads the time (default [`Clock::tokio`], which a paused test clock
    /// controls). `Clock::quanta()` (feature `quanta`) makes a time window's one clock read
    /// per call a few nanoseconds; see [`Clock`].
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keyed breakers only: the most keys held (default 10 000, at most 1 000 000 000). A
    /// key's breaker is forgotten to make room only when that is indistinguishable from a
    /// fresh one (see [`KeyedCircuitBreakerLayer`]); when none can be, a new key is refused
    /// with [`KeySetFull`](palisade_core::rejection::KeySetFull). Each key costs about 1.5 KiB
    /// plus its window: one byte per call of a count window, about 300 bytes plus 24 bytes
    /// per bucket of a time window (a keyed breaker's window and counters are not striped
    /// per CPU, unlike a single breaker's).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Calls `f` with every event (transitions, rejections, recorded calls), synchronously.
    /// A listener that panics is caught and logged: it can fail neither the call nor the
    /// breaker.
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(guarded(f)));
        self
    }

    /// Decides what counts as success, failure or neither (default [`DefaultClassifier`];
    /// `HttpClassifier` makes 5xx fail and 4xx succeed).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayerBuilder<C2> {
        CircuitBreakerLayerBuilder {
            name: self.name,
            trip: self.trip,
            window: self.window,
            window_set: self.window_set,
            time_window_buckets: self.time_window_buckets,
            minimum_calls: self.minimum_calls,
            slow: self.slow,
            wait: self.wait,
            wait_multiplier: self.wait_multiplier,
            max_wait: self.max_wait,
            half_open_trials: self.half_open_trials,
            half_open_failure_ratio: self.half_open_failure_ratio,
            retry_after_cap: self.retry_after_cap,
            measure: self.measure,
            max_keys: self.max_keys,
            max_wait_in_half_open: self.max_wait_in_half_open,
            wait_for_all_trials: self.wait_for_all_trials,
            auto_half_open: self.auto_half_open,
            initial_state: self.initial_state,
            clock: self.clock,
            listeners: self.listeners,
            classifier,
        }
    }

    fn settings(&self) -> Result<Settings, ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        match self.trip {
            Trip::Consecutive(n) => ensure(n >= 1, "consecutive_failures", "must be at least 1")?,
            Trip::FailureCount(n) => ensure(n >= 1, "failure_count", "must be at least 1")?,
            Trip::FailureRate(r) => {
                ensure_ratio("failure_rate", r)?;
                ensure(r > 0.0, "failure_rate", "must be greater than 0")?;
            }
        }
        match self.window {
            WindowKind::Count(n) => ensure(
                (1..=MAX_COUNT_WINDOW).contains(&n),
                "count_window",
                format!("must be from 1 to {MAX_COUNT_WINDOW}"),
            )?,
            WindowKind::Time { length, buckets } => {
                ensure_nonzero_duration("time_window", length)?;
                ensure((1..=1000).contains(&buckets), "time_window_buckets", "must be from 1 to 1000")?;
                ensure(
                    length.as_nanos() >= u128::from(buckets),
                    "time_window",
                    "must be at least one nanosecond per bucket",
                )?;
            }
        }
        if let Some(slow) = self.slow {
            ensure_nonzero_duration("slow_calls", slow.threshold)?;
            ensure_ratio("slow_calls", slow.rate)?;
            ensure(slow.rate > 0.0, "slow_calls", "rate must be greater than 0")?;
        }
        ensure_nonzero_duration("wait_in_open", self.wait)?;
        ensure(
            self.wait_multiplier.is_finite() && self.wait_multiplier >= 1.0,
            "exponential_wait_in_open",
            "multiplier must be a finite number of at least 1.0",
        )?;
        let max_wait = self.max_wait.unwrap_or(self.wait);
        ensure_ordered_durations(self.wait, max_wait)?;
        ensure(
            (1..=u32::from(u16::MAX)).contains(&self.half_open_trials),
            "half_open_trials",
            "must be from 1 to 65535",
        )?;
        let trials = self.half_open_trials as u16;
        let ratio = match (self.half_open_failure_ratio, self.trip) {
            (Some(r), _) => Some(r),
            // Resilience4j judges the trials with the closed state's failure rate threshold.
            (None, Trip::FailureRate(r)) if self.wait_for_all_trials => Some(r),
            (None, _) => None,
        };
        let failures_to_open = match ratio {
            None => 1,
            Some(r) => {
                ensure_ratio("half_open_failure_ratio", r)?;
                ensure(r > 0.0, "half_open_failure_ratio", "must be greater than 0")?;
                // The smallest number of failed trials whose ratio reaches `r`.
                let k = (r * f64::from(trials)).ceil() as u16;
                let k = if f64::from(k.saturating_sub(1)) / f64::from(trials) >= r { k - 1 } else { k };
                k.clamp(1, trials)
            }
        };
        if let Some(cap) = self.retry_after_cap {
            ensure_nonzero_duration("open_on_retry_after", cap)?;
        }
        ensure_nonzero_duration("max_wait_in_half_open", self.max_wait_in_half_open)?;
        let minimum_calls = match self.window {
            WindowKind::Count(n) => self.minimum_calls.min(n),
            WindowKind::Time { .. } => self.minimum_calls,
        };
        let window = match self.trip {
            Trip::Consecutive(_) if self.slow.is_none() && !self.window_set => None,
            _ => Some(self.window),
        };
        let measure = self.measure || self.slow.is_some();
        Ok(Settings {
            name: self.name.clone(),
            trip: self.trip,
            window,
            minimum_calls: u64::from(minimum_calls.max(1)),
            slow: self.slow,
            wait: self.wait,
            wait_multiplier: self.wait_multiplier,
            max_wait,
            half_open_trials: trials,
            half_open_failures_to_open: failures_to_open,
            retry_after_cap: self.retry_after_cap,
            measure,
            max_wait_in_half_open: self.max_wait_in_half_open,
            wait_for_all_trials: self.wait_for_all_trials,
            auto_half_open: self.auto_half_open,
            initial_state: self.initial_state,
            clock: self.clock.clone(),
        })
    }

    fn shared(&self) -> Result<(Arc<Settings>, Arc<LayerShared>), ConfigError> {
        let settings = Arc::new(self.settings()?);
        let events = EventBus::with_listeners(PATTERN, settings.name.clone(), self.listeners.clone());
        let shared = Arc::new(LayerShared::new(&settings.name, events));
        Ok((settings, shared))
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting (a zero threshold or duration, a
    /// rate outside `0..=1`, a window too large, a max wait below the initial one, ...).
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let (settings, shared) = self.shared()?;
        let breaker = Breaker::new(settings, shared, None, self.classifier);
        Ok(CircuitBreakerLayer::from_breaker(Arc::new(breaker)))
    }

    /// Validates the settings and builds a layer holding one breaker per key, `key_fn(&req)`,
    /// created on first use; at most [`max_keys`](Self::max_keys) are held.
    ///
    /// To name the layer's type (to store it in a struct), give a named
    /// [`KeyExtractor`](crate::KeyExtractor) to [`build_keyed_with`](Self::build_keyed_with)
    /// instead of a closure.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and if `max_keys` is zero or above 1 000 000 000.
    pub fn build_keyed<Req, K, F>(self, key_fn: F) -> Result<KeyedCircuitBreakerLayer<C, F, K>, ConfigError>
    where
        F: Fn(&Req) -> K,
        K: Hash + Eq + Clone + fmt::Debug,
    {
        self.build_keyed_with(key_fn)
    }

    /// As [`build_keyed`](Self::build_keyed), with any [`KeyExtractor`](crate::KeyExtractor)
    /// whose key type is `K`: a named type, so that the layer's type can be written down.
    ///
    /// ```
    /// use palisade_circuit_breaker::{CircuitBreakerLayer, KeyExtractor, KeyedCircuitBreakerLayer};
    /// use palisade_core::classify::DefaultClassifier;
    ///
    /// struct Request { tenant: u32 }
    ///
    /// /// The breaker key of a request: its tenant.
    /// struct ByTenant;
    ///
    /// impl KeyExtractor<Request> for ByTenant {
    ///     type Key = u32;
    ///     fn key(&self, req: &Request) -> u32 { req.tenant }
    /// }
    ///
    /// struct Client {
    ///     breakers: KeyedCircuitBreakerLayer<DefaultClassifier, ByTenant, u32>,
    /// }
    ///
    /// let client = Client { breakers: CircuitBreakerLayer::builder().build_keyed_with(ByTenant)? };
    /// # let _ = client.breakers;
    /// # Ok::<(), palisade_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build_keyed`](Self::build_keyed).
    pub fn build_keyed_with<K, E>(
        self,
        extractor: E,
    ) -> Result<KeyedCircuitBreakerLayer<C, E, K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Debug,
    {
        ensure((1..=MAX_KEYS).contains(&self.max_keys), "max_keys", "must be from 1 to 1000000000")?;
        let (settings, shared) = self.shared()?;
        let map = KeyedMap::new(self.max_keys);
        Ok(KeyedCircuitBreakerLayer::new(settings, shared, map, Arc::new(self.classifier), extractor))
    }
}

/// The most keys a keyed layer may be configured to hold.
const MAX_KEYS: usize = 1_000_000_000;

fn ensure_ordered_durations(initial: Duration, max: Duration) -> Result<(), ConfigError> {
    palisade_core::config::ensure_ordered("exponential_wait_in_open", initial, "max", max)
}

#[cfg(feature = "serde")]
pub use self::serde_config::CircuitBreakerConfig;

#[cfg(feature = "serde")]
mod serde_config {
    use std::time::Duration;

    use palisade_core::classify::DefaultClassifier;
    use palisade_core::config::ConfigError;
    use serde::Deserialize;

    use super::CircuitBreakerLayerBuilder;
    use crate::layer::CircuitBreakerLayer;

    /// A breaker's settings from a config file; every field is optional and defaults as in
    /// [`CircuitBreakerLayerBuilder`]. Durations are strings like `"30s"`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade_circuit_breaker::CircuitBreakerConfig;
    ///
    /// let config: CircuitBreakerConfig = serde_json::from_str(r#"{
    ///     "name": "payments",
    ///     "failure_rate": 0.25,
    ///     "time_window": "30s",
    ///     "minimum_calls": 20,
    ///     "slow_call_duration": "2s",
    ///     "slow_call_rate": 0.8,
    ///     "wait_in_open": "5s",
    ///     "max_wait_in_open": "2m",
    ///     "wait_multiplier": 2.0
    /// }"#)?;
    /// let layer = config.build()?;
    /// assert_eq!(layer.handle().name(), "payments");
    /// # Ok(()) }
    /// ```
    #[derive(Clone, Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[non_exhaustive]
    pub struct CircuitBreakerConfig {
        /// See [`CircuitBreakerLayerBuilder::name`].
        pub name: Option<String>,
        /// See [`CircuitBreakerLayerBuilder::consecutive_failures`].
        pub consecutive_failures: Option<u32>,
        /// See [`CircuitBreakerLayerBuilder::failure_count`]; needs `time_window`.
        pub failure_count: Option<u32>,
        /// See [`CircuitBreakerLayerBuilder::failure_rate`].
        pub failure_rate: Option<f64>,
        /// See [`CircuitBreakerLayerBuilder::count_window`].
        pub count_window: Option<u32>,
        /// See [`CircuitBreakerLayerBuilder::time_window`].
        #[serde(with = "palisade_core::duration::serde::option")]
        pub time_window: Option<Duration>,
        /// See [`CircuitBreakerLayerBuilder::time_window_buckets`].
        pub time_window_buckets: Option<u32>,
        /// See [`CircuitBreakerLayerBuilder::minimum_calls`].
        pub minimum_calls: Option<u32>,
        /// See [`CircuitBreakerLayerBuilder::slow_calls`]; needs `slow_call_rate`.
        #[serde(with = "palisade_core::duration::serde::option")]
        pub slow_call_duration: Option<Duration>,
        /// See [`CircuitBreakerLayerBuilder::slow_calls`]; needs `slow_call_duration`.
        pub slow_call_rate: Option<f64>,
        /// See [`CircuitBreakerLayerBuilder::wait_in_open`].
        #[serde(with = "palisade_core::duration::serde::option")]
        pub wait_in_open: Option<Duration>,
        /// See [`CircuitBreakerLayerBuilder::exponential_wait_in_open`].
        pub wait_multiplier: Option<f64>,
        /// See [`CircuitBreakerLayerBuilder::exponential_wait_in_open`].
        #[serde(with = "palisade_core::duration::serde::option")]
        pub max_wait_in_open: Option<Duration>,
        /// See [`CircuitBreakerLayerBuilder::half_open_trials`].
        pub half_open_trials: Option<u32>,
        /// See [`CircuitBreakerLayerBuilder::half_open_failure_ratio`].
        pub half_open_failure_ratio: Option<f64>,
        /// See [`CircuitBreakerLayerBuilder::open_on_retry_after`].
        #[serde(with = "palisade_core::duration::serde::option")]
        pub max_retry_after: Option<Duration>,
        /// See [`CircuitBreakerLayerBuilder::max_keys`].
        pub max_keys: Option<usize>,
        /// See [`CircuitBreakerLayerBuilder::max_wait_in_half_open`].
        #[serde(with = "palisade_core::duration::serde::option")]
        pub max_wait_in_half_open: Option<Duration>,
        /// See [`CircuitBreakerLayerBuilder::wait_for_all_trials`].
        pub wait_for_all_trials: Option<bool>,
        /// See [`CircuitBreakerLayerBuilder::automatic_transition_to_half_open`].
        pub automatic_transition_to_half_open: Option<bool>,
        /// See [`CircuitBreakerLayerBuilder::initial_state`] (`"closed"`, `"forced_open"`, ...).
        pub initial_state: Option<crate::State>,
    }

    impl CircuitBreakerConfig {
        /// A builder with these settings (validated when it builds), to set a classifier or
        /// listeners before building.
        ///
        /// # Errors
        ///
        /// If the fields contradict each other (two modes, half of a pair).
        pub fn into_builder(self) -> Result<CircuitBreakerLayerBuilder, ConfigError> {
            let modes = [
                self.consecutive_failures.is_some(),
                self.failure_count.is_some(),
                self.failure_rate.is_some(),
            ];
            if modes.iter().filter(|m| **m).count() > 1 {
                return Err(ConfigError::new(
                    "failure_rate",
                    "set only one of `consecutive_failures`, `failure_count`, `failure_rate`",
                ));
            }
            let mut b = CircuitBreakerLayerBuilder::<DefaultClassifier>::new();
            if let Some(name) = self.name {
                b = b.name(name);
            }
            if let Some(n) = self.time_window_buckets {
                b = b.time_window_buckets(n);
            }
            if let Some(n) = self.count_window {
                if self.time_window.is_some() {
                    return Err(ConfigError::new(
                        "count_window",
                        "set only one of `count_window`, `time_window`",
                    ));
                }
                b = b.count_window(n);
            }
            if let Some(d) = self.time_window {
                b = b.time_window(d);
            }
            if let Some(n) = self.consecutive_failures {
                b = b.consecutive_failures(n);
            }
            if let Some(n) = self.failure_count {
                let Some(within) = self.time_window else {
                    return Err(ConfigError::new("failure_count", "needs `time_window`"));
                };
                b = b.failure_count(n, within);
            }
            if let Some(r) = self.failure_rate {
                b = b.failure_rate(r);
            }
            if let Some(n) = self.minimum_calls {
                b = b.minimum_calls(n);
            }
            match (self.slow_call_duration, self.slow_call_rate) {
                (Some(d), Some(r)) => b = b.slow_calls(d, r),
                (None, None) => {}
                (Some(_), None) => {
                    return Err(ConfigError::new("slow_call_rate", "needs `slow_call_duration`"))
                }
                (None, Some(_)) => {
                    return Err(ConfigError::new("slow_call_duration", "needs `slow_call_rate`"))
                }
            }
            let wait = self.wait_in_open.unwrap_or(Duration::from_secs(60));
            b = match (self.wait_multiplier, self.max_wait_in_open) {
                (None, None) => b.wait_in_open(wait),
                (m, max) => b.exponential_wait_in_open(wait, m.unwrap_or(2.0), max.unwrap_or(wait)),
            };
            if let Some(n) = self.half_open_trials {
                b = b.half_open_trials(n);
            }
            if let Some(r) = self.half_open_failure_ratio {
                b = b.half_open_failure_ratio(r);
            }
            if let Some(cap) = self.max_retry_after {
                b = b.open_on_retry_after(cap);
            }
            if let Some(n) = self.max_keys {
                b = b.max_keys(n);
            }
            if let Some(max) = self.max_wait_in_half_open {
                b = b.max_wait_in_half_open(max);
            }
            if let Some(on) = self.wait_for_all_trials {
                b = b.wait_for_all_trials(on);
            }
            if let Some(on) = self.automatic_transition_to_half_open {
                b = b.automatic_transition_to_half_open(on);
            }
            if let Some(state) = self.initial_state {
                b = b.initial_state(state);
            }
            Ok(b)
        }

        /// Validates and builds the layer (default classifier).
        ///
        /// # Errors
        ///
        /// As [`into_builder`](Self::into_builder) and
        /// [`CircuitBreakerLayerBuilder::build`].
        pub fn build(self) -> Result<CircuitBreakerLayer, ConfigError> {
            self.into_builder()?.build()
        }
    }
}
