//! A state exported as one gauge series per state value (`state="open"` 1, the others 0).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::Gauge;

/// A state machine's current state, exported as the gauge `metric` with one series per state
/// (`palisade_circuit_breaker_state{name, state="open"} 1`, the other states 0), so a
/// dashboard shows the state by its name instead of decoding a number (as Resilience4j's
/// `resilience4j_circuitbreaker_state{state}`).
///
/// ```
/// use palisade_core::metric::StateGauge;
///
/// let state = StateGauge::new("palisade_demo_state", "demo", "state", &["closed", "open"], 0);
/// state.set(1);
/// assert_eq!(state.get(), 1);
/// ```
pub struct StateGauge {
    current: AtomicUsize,
    /// One series per state; the lock orders concurrent `set`s so the export ends with
    /// exactly one series at 1.
    series: Mutex<Vec<Gauge>>,
}

impl std::fmt::Debug for StateGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StateGauge").field(&self.get()).finish()
    }
}

impl StateGauge {
    /// The gauge `metric` for the layer `name`, one series per value of `states` under the
    /// label `label`, starting in `states[initial]`.
    pub fn new(
        metric: &'static str,
        name: &str,
        label: &'static str,
        states: &'static [&'static str],
        initial: usize,
    ) -> Self {
        let series: Vec<Gauge> =
            states.iter().map(|state| Gauge::labeled(metric, name, (label, *state))).collect();
        let gauge = Self { current: AtomicUsize::new(initial), series: Mutex::new(series) };
        gauge.set(initial);
        gauge
    }

    /// Makes `states[index]` the current state (an index past the end sets every series to 0).
    pub fn set(&self, index: usize) {
        let series = crate::sync::lock(&self.series);
        self.current.store(index, Ordering::Relaxed);
        for (i, gauge) in series.iter().enumerate() {
            gauge.set(i64::from(i == index));
        }
    }

    /// The index of the current state.
    pub fn get(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
}
