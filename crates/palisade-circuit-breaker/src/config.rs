//! [`CircuitBreakerConfig`]: every option of a breaker, its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ratio, ConfigError};
use palisade_core::keyed::Unkeyed;

use crate::builder::CircuitBreakerBuilder;
use crate::layer::CircuitBreakerLayer;
use crate::settings::{Settings, SlowCalls, Trip, WindowKind};
use crate::state::CircuitState;
use crate::window::MAX_COUNT_WINDOW;

/// The name a breaker has unless told otherwise.
pub(crate) const PATTERN: &str = "circuit_breaker";

/// The most keys a keyed layer may be configured to hold.
const MAX_KEYS: usize = 1_000_000_000;

/// A breaker's settings: the storage of [`CircuitBreakerBuilder`], and the form read from a
/// config file (feature `serde`: every field is optional, durations are strings like
/// `"30s"`, unknown fields are refused).
///
/// # Defaults
///
/// Resilience4j's, so that a configuration ported from it behaves the same: failure rate
/// 50 % over the last 100 calls, judged once the window holds 100 calls; 60 s open; 10
/// half-open trials. Two deliberate differences: rates are ratios (`0.5`) where
/// Resilience4j takes percentages (`failureRateThreshold = 50`), which is why the option is
/// `failure_rate`, not `failure_rate_threshold` (one unit for every rate palisade takes and
/// reports); and `max_wait_in_half_open` is 60 s where Resilience4j has no bound (a hung
/// trial would reject every call for ever).
///
/// Exactly one mode opens a closed breaker: [`consecutive_failures`](Self::consecutive_failures),
/// [`failure_count`](Self::failure_count) or [`failure_rate`](Self::failure_rate) (the
/// default when none is set).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # #[cfg(feature = "serde")] {
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
/// # }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// The breaker's name, in rejections, events and metric labels. Default
    /// `"circuit_breaker"`; not empty.
    pub name: String,
    /// Opens after this many failures in a row (a success resets the count). At least 1.
    /// Cheapest mode: one atomic counter, no window unless slow calls are detected or a
    /// window is set.
    pub consecutive_failures: Option<u32>,
    /// Opens after this many failures within [`time_window`](Self::time_window) (which it
    /// needs), however many calls succeeded ("5 failures per minute"). At least 1.
    pub failure_count: Option<u32>,
    /// Opens when failures / calls in the window reaches this ratio (`0.5` = 50 %, the
    /// boundary included; in `(0, 1]`), once the window holds
    /// [`minimum_calls`](Self::minimum_calls). The mode when no other is set, with 0.5.
    pub failure_rate: Option<f64>,
    /// Rates are computed over the last this many calls (1 to 1 048 575). Default: 100 when
    /// no [`time_window`](Self::time_window) is set. Not with `time_window`. A keyed layer
    /// that sets neither (and needs a window: not in consecutive mode without slow calls) uses a time window of 100 s
    /// instead: a count window never empties, so every key that ever called would be kept,
    /// and once `max_keys` keys were seen every new key would be refused.
    pub count_window: Option<u32>,
    /// Rates are computed over the calls of the last this long, in
    /// [`time_window_buckets`](Self::time_window_buckets) buckets: a call leaves the window
    /// between `(1 - 1/buckets)` × this and this after it ended. At least one nanosecond per
    /// bucket.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub time_window: Option<Duration>,
    /// Buckets of a time window (1 to 1000, default 10): more make its edge sharper and
    /// cost memory, not time.
    pub time_window_buckets: u32,
    /// Calls the window must hold before a rate is judged (default 100); for a count window
    /// at most its size.
    pub minimum_calls: u32,
    /// A call longer than this is slow (with [`slow_call_rate`](Self::slow_call_rate),
    /// which it needs). In half-open state a slow trial counts as a failed one. Default
    /// `None`: not detected.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub slow_call_duration: Option<Duration>,
    /// Opens when slow calls / calls in the window reaches this ratio, even if they
    /// succeeded (in `(0, 1]`; needs [`slow_call_duration`](Self::slow_call_duration)).
    pub slow_call_rate: Option<f64>,
    /// How long the breaker stays open before letting trials through. Default 60 s; not
    /// zero.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub wait_in_open: Duration,
    /// Each re-open from half-open multiplies the open wait by this, up to
    /// [`max_wait_in_open`](Self::max_wait_in_open); the wait starts over once the breaker
    /// closes (by itself or by hand, as Resilience4j and Polly). Default 1.0 (fixed); a
    /// finite number of at least 1.
    pub wait_multiplier: f64,
    /// The longest open wait (default: `wait_in_open`); not below it.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub max_wait_in_open: Option<Duration>,
    /// Trial calls let through in half-open state (1 to 65 535, default 10); calls beyond
    /// them are rejected until the trials decide.
    pub half_open_trials: u32,
    /// Re-open when failed trials / trials reaches this ratio (in `(0, 1]`) instead of on
    /// the first failed trial; close as soon as that can no longer happen. Default `None`.
    pub half_open_failure_ratio: Option<f64>,
    /// A failed call whose classification carries a server retry hint (503 +
    /// `Retry-After`, `RESOURCE_EXHAUSTED` + pushback) opens the breaker for that long, at
    /// most this. Default `None`: hints do not open it. Not zero.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub max_retry_after: Option<Duration>,
    /// Measure each call's duration and classify with
    /// [`classify_timed`](palisade_core::Classify::classify_timed) (always on when slow
    /// calls are detected). Default off: the pass path then reads no clock in consecutive
    /// and count-window modes, and one (when the call ends) with a time window.
    pub measure_call_duration: bool,
    /// The longest a breaker stays half-open (default 60 s, not zero; `Duration::MAX`
    /// saturates to "never"): if the trials have not decided by then, it re-opens for the
    /// next wait. Resilience4j's `maxWaitDurationInHalfOpenState`. With
    /// [`automatic_transition_to_half_open`](Self::automatic_transition_to_half_open) a
    /// timer re-opens it at that time (as Resilience4j's scheduler does); without, the first
    /// call after it does, as from that time.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub max_wait_in_half_open: Duration,
    /// Judge the half-open trials only once all of them ended, as Resilience4j (default
    /// `false`: decide as soon as the outcome is certain). The breaker then re-opens when
    /// failed trials / trials reaches [`half_open_failure_ratio`](Self::half_open_failure_ratio)
    /// or, when that is not set, the failure rate threshold (any failed trial in the other
    /// modes).
    pub wait_for_all_trials: bool,
    /// Move from open to half-open on a timer when the wait ends (publishing the transition
    /// then), as Resilience4j's `automaticTransitionFromOpenToHalfOpenEnabled`, and back to
    /// open when [`max_wait_in_half_open`](Self::max_wait_in_half_open) ends without a
    /// decision. Default off: the first call after the wait moves it, so an idle breaker
    /// costs nothing.
    pub automatic_transition_to_half_open: bool,
    /// The state a breaker starts in (default [`CircuitState::Closed`]).
    pub initial_state: CircuitState,
    /// Keyed layers only: the most keys held (1 to 1 000 000 000, default 100 000).
    pub max_keys: usize,
    /// Keyed layers only: what a request without a key meets (default
    /// [`Unkeyed::Reject`]).
    pub when_unkeyed: Unkeyed,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            name: String::from(PATTERN),
            consecutive_failures: None,
            failure_count: None,
            failure_rate: None,
            count_window: None,
            time_window: None,
            time_window_buckets: 10,
            minimum_calls: 100,
            slow_call_duration: None,
            slow_call_rate: None,
            wait_in_open: Duration::from_secs(60),
            wait_multiplier: 1.0,
            max_wait_in_open: None,
            half_open_trials: 10,
            half_open_failure_ratio: None,
            max_retry_after: None,
            measure_call_duration: false,
            max_wait_in_half_open: Duration::from_secs(60),
            wait_for_all_trials: false,
            automatic_transition_to_half_open: false,
            initial_state: CircuitState::Closed,
            max_keys: 100_000,
            when_unkeyed: Unkeyed::Reject,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks every setting, as [`CircuitBreakerBuilder::build`] does.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field (two fields for a contradiction: two
    /// modes, both windows, half of a pair).
    pub fn validate(&self) -> Result<(), ConfigError> {
        const ONE_MODE: &str = "set only one of `consecutive_failures`, `failure_count`, `failure_rate`";
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        match (self.consecutive_failures, self.failure_count, self.failure_rate) {
            (Some(_), _, Some(_)) => {
                return Err(ConfigError::conflict("failure_rate", "consecutive_failures", ONE_MODE))
            }
            (_, Some(_), Some(_)) => {
                return Err(ConfigError::conflict("failure_rate", "failure_count", ONE_MODE))
            }
            (Some(_), Some(_), _) => {
                return Err(ConfigError::conflict("failure_count", "consecutive_failures", ONE_MODE))
            }
            _ => {}
        }
        let trip = self.trip();
        match trip {
            Trip::Consecutive(n) => ensure(n >= 1, "consecutive_failures", "must be at least 1")?,
            Trip::FailureCount(n) => ensure(n >= 1, "failure_count", "must be at least 1")?,
            Trip::FailureRate(r) => {
                ensure_ratio("failure_rate", r)?;
                ensure(r > 0.0, "failure_rate", "must be greater than 0")?;
            }
        }
        match (self.count_window, self.time_window) {
            (Some(_), Some(_)) => {
                let rule = "set only one of `count_window`, `time_window`";
                return Err(ConfigError::conflict("count_window", "time_window", rule));
            }
            (None, None) if matches!(trip, Trip::FailureCount(_)) => {
                return Err(ConfigError::new("failure_count", "needs `time_window`"));
            }
            _ => {}
        }
        match self.window() {
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
        match (self.slow_call_duration, self.slow_call_rate) {
            (Some(threshold), Some(rate)) => {
                ensure_nonzero_duration("slow_call_duration", threshold)?;
                ensure_ratio("slow_call_rate", rate)?;
                ensure(rate > 0.0, "slow_call_rate", "must be greater than 0")?;
            }
            (Some(_), None) => return Err(ConfigError::new("slow_call_rate", "needs `slow_call_duration`")),
            (None, Some(_)) => return Err(ConfigError::new("slow_call_duration", "needs `slow_call_rate`")),
            (None, None) => {}
        }
        ensure_nonzero_duration("wait_in_open", self.wait_in_open)?;
        ensure(
            self.wait_multiplier.is_finite() && self.wait_multiplier >= 1.0,
            "wait_multiplier",
            "must be a finite number of at least 1.0",
        )?;
        if self.max_wait_in_open.is_some_and(|max| max < self.wait_in_open) {
            let rule = "must not be below `wait_in_open`";
            return Err(ConfigError::conflict("max_wait_in_open", "wait_in_open", rule));
        }
        ensure(
            (1..=u32::from(u16::MAX)).contains(&self.half_open_trials),
            "half_open_trials",
            "must be from 1 to 65535",
        )?;
        if let Some(r) = self.half_open_ratio(trip) {
            ensure_ratio("half_open_failure_ratio", r)?;
            ensure(r > 0.0, "half_open_failure_ratio", "must be greater than 0")?;
        }
        if let Some(cap) = self.max_retry_after {
            ensure_nonzero_duration("max_retry_after", cap)?;
        }
        ensure_nonzero_duration("max_wait_in_half_open", self.max_wait_in_half_open)?;
        ensure((1..=MAX_KEYS).contains(&self.max_keys), "max_keys", "must be from 1 to 1000000000")
    }

    /// A builder with these settings, to set a classifier, a clock, listeners or a key
    /// before building.
    pub fn into_builder(self) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::from_config(self)
    }

    /// Validates and builds the layer (default classifier).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn build(self) -> Result<CircuitBreakerLayer, ConfigError> {
        self.into_builder().build()
    }

    /// The mode that opens a closed breaker (the first set; `validate` refuses two).
    fn trip(&self) -> Trip {
        match (self.consecutive_failures, self.failure_count, self.failure_rate) {
            (Some(n), _, _) => Trip::Consecutive(n),
            (None, Some(n), _) => Trip::FailureCount(n),
            (None, None, r) => Trip::FailureRate(r.unwrap_or(0.5)),
        }
    }

    /// The window (the first set; `validate` refuses both).
    fn window(&self) -> WindowKind {
        match (self.count_window, self.time_window) {
            (Some(n), _) => WindowKind::Count(n),
            (None, Some(length)) => WindowKind::Time { length, buckets: self.time_window_buckets },
            (None, None) => WindowKind::Count(100),
        }
    }

    /// The ratio of failed trials that re-opens: the configured one, or with
    /// `wait_for_all_trials` the failure rate threshold (as Resilience4j judges the trials).
    fn half_open_ratio(&self, trip: Trip) -> Option<f64> {
        match (self.half_open_failure_ratio, trip) {
            (Some(r), _) => Some(r),
            (None, Trip::FailureRate(r)) if self.wait_for_all_trials => Some(r),
            (None, _) => None,
        }
    }

    /// The runtime form (with tokio's clock), for a config [`validate`](Self::validate)
    /// accepted: total, it never fails.
    pub(crate) fn settings(&self) -> Settings {
        let trip = self.trip();
        let window = self.window();
        let trials = self.half_open_trials.clamp(1, u32::from(u16::MAX)) as u16;
        // The smallest number of failed trials whose ratio reaches `r`.
        let failures_to_open = self.half_open_ratio(trip).map_or(1, |r| {
            let k = (r * f64::from(trials)).ceil() as u16;
            let k =
                if f64::from(k.saturating_sub(1)) / f64::from(trials) >= r { k.saturating_sub(1) } else { k };
            k.clamp(1, trials)
        });
        let minimum_calls = match window {
            WindowKind::Count(n) => self.minimum_calls.min(n),
            WindowKind::Time { .. } => self.minimum_calls,
        };
        let slow = self
            .slow_call_duration
            .zip(self.slow_call_rate)
            .map(|(threshold, rate)| SlowCalls { threshold, rate });
        let explicit_window = self.count_window.is_some() || self.time_window.is_some();
        Settings {
            name: self.name.as_str().into(),
            trip,
            window: match trip {
                Trip::Consecutive(_) if slow.is_none() && !explicit_window => None,
                _ => Some(window),
            },
            minimum_calls: u64::from(minimum_calls.max(1)),
            slow,
            wait: self.wait_in_open,
            wait_multiplier: self.wait_multiplier,
            max_wait: self.max_wait_in_open.unwrap_or(self.wait_in_open),
            half_open_trials: trials,
            half_open_failures_to_open: failures_to_open,
            retry_after_cap: self.max_retry_after,
            measure: self.measure_call_duration || slow.is_some(),
            max_wait_in_half_open: self.max_wait_in_half_open,
            wait_for_all_trials: self.wait_for_all_trials,
            auto_half_open: self.automatic_transition_to_half_open,
            initial_state: self.initial_state,
            clock: palisade_core::clock::Clock::tokio(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::CircuitBreakerConfig;

    #[test]
    fn the_defaults_are_valid() {
        // `CircuitBreakerLayer::new()` builds them without validating.
        assert_eq!(CircuitBreakerConfig::default().validate(), Ok(()));
    }
}
