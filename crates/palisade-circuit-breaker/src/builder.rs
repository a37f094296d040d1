//! [`CircuitBreakerBuilder`] and [`KeyedCircuitBreakerBuilder`]: a [`CircuitBreakerConfig`]
//! plus what a config file cannot hold (classifier, clock, listeners, key function).

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::__private::KeyedMap;
use palisade_core::classify::DefaultClassifier;
use palisade_core::clock::Clock;
use palisade_core::config::ConfigError;
use palisade_core::event::{EventBus, Listener};
use palisade_core::keyed::Unkeyed;

use crate::breaker::{Breaker, LayerShared};
use crate::config::{CircuitBreakerConfig, PATTERN};
use crate::event::{guarded, CircuitBreakerEvent};
use crate::keyed::{KeyExtractor, KeyedShared};
use crate::layer::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
use crate::settings::Settings;
use crate::state::CircuitState;

/// Builds a [`CircuitBreakerLayer`], or with [`keyed`](Self::keyed) a
/// [`KeyedCircuitBreakerLayer`]; from [`CircuitBreakerLayer::builder`]. Each setter writes
/// one field of [`CircuitBreakerConfig`] (where its meaning, default and bounds are
/// documented); [`build`](Self::build) validates them all.
pub struct CircuitBreakerBuilder<C = DefaultClassifier> {
    config: CircuitBreakerConfig,
    clock: Clock,
    listeners: Vec<Listener<CircuitBreakerEvent>>,
    classifier: C,
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreakerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("listeners", &self.listeners.len())
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        Self::from_config(CircuitBreakerConfig::default())
    }
}

impl CircuitBreakerBuilder {
    pub(crate) fn from_config(config: CircuitBreakerConfig) -> Self {
        Self { config, clock: Clock::tokio(), listeners: Vec::new(), classifier: DefaultClassifier }
    }
}

impl<C> CircuitBreakerBuilder<C> {
    /// Replaces every setting with `config` (classifier, clock and listeners are kept).
    pub fn config(mut self, config: CircuitBreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`CircuitBreakerConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Opens after `n` failures in a row: sets [`CircuitBreakerConfig::consecutive_failures`]
    /// (and unsets the other modes).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        (self.config.consecutive_failures, self.config.failure_count, self.config.failure_rate) =
            (Some(n), None, None);
        self
    }

    /// Opens after `n` failures within the last `within`: sets
    /// [`CircuitBreakerConfig::failure_count`] (unsetting the other modes) and a
    /// [`time_window`](Self::time_window) of `within`.
    pub fn failure_count(mut self, n: u32, within: Duration) -> Self {
        (self.config.consecutive_failures, self.config.failure_count, self.config.failure_rate) =
            (None, Some(n), None);
        self.time_window(within)
    }

    /// Opens when failures / calls reaches `rate`: sets [`CircuitBreakerConfig::failure_rate`]
    /// (and unsets the other modes).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        (self.config.consecutive_failures, self.config.failure_count, self.config.failure_rate) =
            (None, None, Some(rate));
        self
    }

    /// Sets [`CircuitBreakerConfig::count_window`] (and unsets the time window).
    pub fn count_window(mut self, calls: u32) -> Self {
        (self.config.count_window, self.config.time_window) = (Some(calls), None);
        self
    }

    /// Sets [`CircuitBreakerConfig::time_window`] (and unsets the count window).
    pub fn time_window(mut self, length: Duration) -> Self {
        (self.config.count_window, self.config.time_window) = (None, Some(length));
        self
    }

    /// Sets [`CircuitBreakerConfig::time_window_buckets`].
    pub fn time_window_buckets(mut self, buckets: u32) -> Self {
        self.config.time_window_buckets = buckets;
        self
    }

    /// Sets [`CircuitBreakerConfig::minimum_calls`].
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.config.minimum_calls = n;
        self
    }

    /// Sets [`CircuitBreakerConfig::slow_call_duration`] and
    /// [`CircuitBreakerConfig::slow_call_rate`]: a call longer than `threshold` is slow, and
    /// the breaker opens when slow calls / calls reaches `rate`.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        (self.config.slow_call_duration, self.config.slow_call_rate) = (Some(threshold), Some(rate));
        self
    }

    /// A fixed open wait: sets [`CircuitBreakerConfig::wait_in_open`] (and a
    /// [`wait_multiplier`](CircuitBreakerConfig::wait_multiplier) of 1).
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        (self.config.wait_in_open, self.config.wait_multiplier, self.config.max_wait_in_open) =
            (wait, 1.0, None);
        self
    }

    /// An exponential open wait: sets [`CircuitBreakerConfig::wait_in_open`] to `initial`,
    /// [`wait_multiplier`](CircuitBreakerConfig::wait_multiplier) and
    /// [`max_wait_in_open`](CircuitBreakerConfig::max_wait_in_open).
    pub fn exponential_wait_in_open(mut self, initial: Duration, multiplier: f64, max: Duration) -> Self {
        (self.config.wait_in_open, self.config.wait_multiplier, self.config.max_wait_in_open) =
            (initial, multiplier, Some(max));
        self
    }

    /// Sets [`CircuitBreakerConfig::half_open_trials`].
    pub fn half_open_trials(mut self, n: u32) -> Self {
        self.config.half_open_trials = n;
        self
    }

    /// Sets [`CircuitBreakerConfig::half_open_failure_ratio`].
    pub fn half_open_failure_ratio(mut self, ratio: f64) -> Self {
        self.config.half_open_failure_ratio = Some(ratio);
        self
    }

    /// Opens for a failed call's server hint, at most `max`: sets
    /// [`CircuitBreakerConfig::max_retry_after`].
    pub fn open_on_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = Some(max);
        self
    }

    /// Sets [`CircuitBreakerConfig::measure_call_duration`].
    pub fn measure_call_duration(mut self, on: bool) -> Self {
        self.config.measure_call_duration = on;
        self
    }

    /// Sets [`CircuitBreakerConfig::max_wait_in_half_open`]. Put the timeout **inside** the
    /// breaker (`breaker.layer(timeout.layer(svc))`), so that a hung trial fails and frees
    /// its slot; this bound is the last resort.
    pub fn max_wait_in_half_open(mut self, max: Duration) -> Self {
        self.config.max_wait_in_half_open = max;
        self
    }

    /// Sets [`CircuitBreakerConfig::wait_for_all_trials`].
    pub fn wait_for_all_trials(mut self, on: bool) -> Self {
        self.config.wait_for_all_trials = on;
        self
    }

    /// Sets [`CircuitBreakerConfig::automatic_transition_to_half_open`]. The timer is a
    /// task on the tokio runtime current when the breaker opens (none outside a runtime:
    /// then the first call moves it); it does not keep the breaker alive.
    pub fn automatic_transition_to_half_open(mut self, on: bool) -> Self {
        self.config.automatic_transition_to_half_open = on;
        self
    }

    /// Sets [`CircuitBreakerConfig::initial_state`]: e.g. [`CircuitState::ForcedOpen`] to
    /// start isolated until an operator closes it. [`CircuitState::Open`] starts open for
    /// the first wait, [`CircuitState::HalfOpen`] with trials.
    pub fn initial_state(mut self, state: CircuitState) -> Self {
        self.config.initial_state = state;
        self
    }

    /// Where the breaker reads the time (default [`Clock::tokio`], which a paused test clock
    /// controls). `Clock::quanta()` (feature `quanta`) makes a time window's one clock read
    /// per call a few nanoseconds; call durations are always measured on tokio's clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `f` with every event (transitions, rejections, recorded calls), synchronously.
    /// A listener that panics is caught and logged: it can fail neither the call nor the
    /// breaker.
    pub fn on_event<OnEvent>(mut self, f: OnEvent) -> Self
    where
        OnEvent: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(guarded(f)));
        self
    }

    /// Decides what counts as success, failure or neither (default [`DefaultClassifier`];
    /// `HttpClassifier` makes 5xx fail and 4xx succeed).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerBuilder<C2> {
        CircuitBreakerBuilder {
            config: self.config,
            clock: self.clock,
            listeners: self.listeners,
            classifier,
        }
    }

    /// One breaker per key: `key_fn` gives a request's key (`None`: the request has none,
    /// see [`when_unkeyed`](KeyedCircuitBreakerBuilder::when_unkeyed)). A closure
    /// `Fn(&Req) -> Option<K>`, or a named [`KeyExtractor`] to be able to write the layer's
    /// type down. See [`KeyedCircuitBreakerLayer`].
    pub fn keyed<Req, K, F>(self, key_fn: F) -> KeyedCircuitBreakerBuilder<C, K, F>
    where
        F: KeyExtractor<Req, Key = K>,
    {
        KeyedCircuitBreakerBuilder { inner: self, key_fn, key: PhantomData }
    }

    /// The validated settings and the layer's shared parts.
    fn shared(&self) -> Result<(Arc<Settings>, Arc<LayerShared>), ConfigError> {
        self.config.validate()?;
        let mut settings = self.config.settings();
        settings.clock = self.clock.clone();
        let settings = Arc::new(settings);
        let events = EventBus::with_listeners(PATTERN, settings.name.clone(), self.listeners.clone());
        let shared = Arc::new(LayerShared::new(&settings.name, events, !self.listeners.is_empty()));
        Ok((settings, shared))
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field (see
    /// [`CircuitBreakerConfig::validate`]).
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let (settings, shared) = self.shared()?;
        let breaker = Breaker::new(settings, shared, None, self.classifier);
        Ok(CircuitBreakerLayer::from_breaker(Arc::new(breaker)))
    }
}

// === impl KeyedCircuitBreakerBuilder ===

/// Builds a [`KeyedCircuitBreakerLayer`]: a [`CircuitBreakerBuilder`] and a key function;
/// from [`CircuitBreakerBuilder::keyed`].
pub struct KeyedCircuitBreakerBuilder<C, K, F> {
    inner: CircuitBreakerBuilder<C>,
    key_fn: F,
    key: PhantomData<fn() -> K>,
}

impl<C: fmt::Debug, K, F> fmt::Debug for KeyedCircuitBreakerBuilder<C, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerBuilder").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<C, K, F> KeyedCircuitBreakerBuilder<C, K, F> {
    /// Sets [`CircuitBreakerConfig::max_keys`]. A key's breaker is forgotten to make room
    /// only when that is indistinguishable from a fresh one (see
    /// [`KeyedCircuitBreakerLayer`]); when none can be, a new key is refused with
    /// [`KeySetFull`](crate::error::KeySetFull). Each key costs about 1.5 KiB plus its
    /// window: one byte per call of a count window, about 300 bytes plus 24 bytes per
    /// bucket of a time window. Since callers choosing keys can make the layer hold
    /// `max_keys` of them, [`build`](Self::build) refuses a product above 4 GiB.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.inner.config.max_keys = n;
        self
    }

    /// Sets [`CircuitBreakerConfig::when_unkeyed`]: [`Unkeyed::Reject`] refuses a request
    /// without a key with [`KeyMissing`](crate::error::KeyMissing), [`Unkeyed::PassThrough`]
    /// lets it through with no breaker, [`Unkeyed::Shared`] puts every such request under
    /// one breaker of its own. The first such request logs a warning, once per layer.
    pub fn when_unkeyed(mut self, unkeyed: Unkeyed) -> Self {
        self.inner.config.when_unkeyed = unkeyed;
        self
    }

    /// As [`CircuitBreakerBuilder::on_event`]: every event of every key's breaker.
    pub fn on_event<OnEvent>(mut self, f: OnEvent) -> Self
    where
        OnEvent: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.inner = self.inner.on_event(f);
        self
    }

    /// Validates the settings and builds the keyed layer.
    ///
    /// # Errors
    ///
    /// As [`CircuitBreakerBuilder::build`]; and a [`ConfigError`] naming `max_keys` (with
    /// `count_window` or `time_window_buckets`) when `max_keys` keys with their windows
    /// could hold more than 4 GiB.
    pub fn build(mut self) -> Result<KeyedCircuitBreakerLayer<C, K, F>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Debug,
    {
        let config = &mut self.inner.config;
        // (Consecutive mode has no window unless slow calls are detected.)
        let windowed = config.consecutive_failures.is_none() || config.slow_call_duration.is_some();
        if windowed && config.count_window.is_none() && config.time_window.is_none() {
            // Keys come and go: judge over a window whose calls age out, so that an idle
            // healthy key can be forgotten. A count window never empties, and every key
            // that ever called would be kept, refusing every new key once `max_keys` were
            // seen (see `CircuitBreakerConfig::count_window`).
            config.time_window = Some(KEYED_DEFAULT_TIME_WINDOW);
        }
        let (settings, shared) = self.inner.shared()?;
        keyed_memory(&self.inner.config)?;
        let map = KeyedMap::new(self.inner.config.max_keys);
        let when_unkeyed = self.inner.config.when_unkeyed;
        Ok(KeyedCircuitBreakerLayer::from_shared(KeyedShared::new(
            settings,
            shared,
            map,
            Arc::new(self.inner.classifier),
            self.key_fn,
            when_unkeyed,
        )))
    }
}

/// The window of a keyed layer that sets none: Resilience4j's default window size (100),
/// in seconds, as a time window.
const KEYED_DEFAULT_TIME_WINDOW: std::time::Duration = std::time::Duration::from_secs(100);

/// The most memory the breakers of a keyed layer may hold: 4 GiB.
const MAX_KEYED_MEMORY: u128 = 1 << 32;

/// Refuses a keyed config whose keys could hold more than [`MAX_KEYED_MEMORY`].
///
/// Each key gets a breaker and a window as soon as it calls, so callers choosing keys can
/// make the layer hold `max_keys` of them: about 1.5 KiB each plus the window (one byte per
/// call of a count window; about 300 bytes plus 24 per bucket, rounded up to a power of
/// two, of a time window). `max_keys` bounds the keys, this bounds their product with the
/// window — a count window of 2^20 calls with the default 100,000 keys was 100 GB.
fn keyed_memory(config: &CircuitBreakerConfig) -> Result<(), ConfigError> {
    let (window, field) = match (config.count_window, config.time_window) {
        (Some(n), _) => (u128::from(n), "count_window"),
        (None, Some(_)) => {
            let slots = u128::from(config.time_window_buckets.max(1).next_power_of_two());
            (300 + 24 * slots, "time_window_buckets")
        }
        (None, None) => (100, "count_window"),
    };
    let per_key = 1536 + window;
    let keys = u128::try_from(config.max_keys).unwrap_or(u128::MAX);
    if keys.saturating_mul(per_key) > MAX_KEYED_MEMORY {
        let most = MAX_KEYED_MEMORY / per_key;
        let rule = format!(
            "max_keys × the memory of one key's breaker and window ({per_key} bytes) must stay within 4 GiB: \
             at most {most} keys with this window"
        );
        return Err(ConfigError::conflict("max_keys", field, rule));
    }
    Ok(())
}
