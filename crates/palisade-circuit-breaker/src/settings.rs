//! The validated form of a [`CircuitBreakerConfig`](crate::CircuitBreakerConfig) that the
//! breakers of a layer share.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::clock::Clock;
use palisade_core::time::mul_f64_saturating;

use crate::state::CircuitState;

/// What opens a closed breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Trip {
    /// `n` failures in a row.
    Consecutive(u32),
    /// `n` failures within the window, whatever the number of successes.
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
    pub(crate) initial_state: CircuitState,
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
