//! Run-time control and counters of a chaos layer.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::__private::{AtomicRng, Counter};
use palisade_core::config::{ensure, ensure_ratio, ConfigError};
use palisade_core::event::EventBus;

use crate::event::ChaosEvent;

/// One million: rates are kept in parts per million.
pub(crate) const PPM: u32 = 1_000_000;

/// `rate` (already validated to `0..=1`) in parts per million.
pub(crate) fn to_ppm(rate: f64) -> u32 {
    (rate * f64::from(PPM)).round().clamp(0.0, f64::from(PPM)) as u32
}

fn from_ppm(ppm: u32) -> f64 {
    f64::from(ppm) / f64::from(PPM)
}

/// The settings that change at run time, the generator and the counters.
pub(crate) struct Control {
    pub(crate) name: Arc<str>,
    pub(crate) enabled: AtomicBool,
    pub(crate) fault_ppm: AtomicU32,
    pub(crate) outcome_ppm: AtomicU32,
    pub(crate) latency_ppm: AtomicU32,
    pub(crate) hang_ppm: AtomicU32,
    pub(crate) latency_nanos: AtomicU64,
    pub(crate) has_outcome: bool,
    pub(crate) has_latency_fn: bool,
    pub(crate) rng: AtomicRng,
    pub(crate) bus: EventBus<ChaosEvent>,
    pub(crate) considered: Counter,
    pub(crate) faults: Counter,
    pub(crate) outcomes: Counter,
    pub(crate) latencies: Counter,
    pub(crate) hangs: Counter,
}

impl Control {
    pub(crate) fn new(name: Arc<str>, bus: EventBus<ChaosEvent>, rng: AtomicRng) -> Self {
        Self {
            enabled: AtomicBool::new(true),
            fault_ppm: AtomicU32::new(0),
            outcome_ppm: AtomicU32::new(0),
            latency_ppm: AtomicU32::new(0),
            hang_ppm: AtomicU32::new(0),
            latency_nanos: AtomicU64::new(0),
            has_outcome: false,
            has_latency_fn: false,
            rng,
            bus,
            considered: Counter::new("palisade_chaos_considered_total", &name),
            faults: Counter::labeled("palisade_chaos_injected_total", &name, ("fault", "error")),
            outcomes: Counter::labeled("palisade_chaos_injected_total", &name, ("fault", "outcome")),
            latencies: Counter::labeled("palisade_chaos_injected_total", &name, ("fault", "latency")),
            hangs: Counter::labeled("palisade_chaos_injected_total", &name, ("fault", "hang")),
            name,
        }
    }

    /// Whether to inject at the rate stored in `ppm`: never draws at 0 or 1.
    #[inline]
    pub(crate) fn roll(&self, ppm: &AtomicU32) -> bool {
        match ppm.load(Ordering::Relaxed) {
            0 => false,
            p if p >= PPM => true,
            p => self.rng.below(u64::from(PPM)) < u64::from(p),
        }
    }

    /// Whether any rate is above zero (nothing to draw otherwise).
    #[inline]
    pub(crate) fn any_rate(&self) -> bool {
        (self.fault_ppm.load(Ordering::Relaxed)
            | self.outcome_ppm.load(Ordering::Relaxed)
            | self.latency_ppm.load(Ordering::Relaxed)
            | self.hang_ppm.load(Ordering::Relaxed))
            != 0
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }
}

/// Switches a [`ChaosLayer`](crate::ChaosLayer) on and off, changes its rates, reads its
/// counters and registers listeners for its events — while it runs.
///
/// Changes take effect from the next call, on every service and clone the layer built.
///
/// # Clone
///
/// Cheap: clones share the layer's state.
#[derive(Clone)]
pub struct ChaosHandle {
    pub(crate) control: Arc<Control>,
}

impl fmt::Debug for ChaosHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosHandle")
            .field("name", &self.control.name)
            .field("enabled", &self.is_enabled())
            .field("rates", &self.rates())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl ChaosHandle {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.control.name
    }

    /// Whether the layer injects anything.
    pub fn is_enabled(&self) -> bool {
        self.control.enabled.load(Ordering::Relaxed)
    }

    /// Switches injection on or off.
    pub fn set_enabled(&self, enabled: bool) {
        self.control.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Switches injection on.
    pub fn enable(&self) {
        self.set_enabled(true);
    }

    /// Switches injection off: calls pass untouched.
    pub fn disable(&self) {
        self.set_enabled(false);
    }

    /// Sets the fault injection rate.
    ///
    /// # Errors
    ///
    /// When `rate` is not within `0.0..=1.0`.
    pub fn set_fault_rate(&self, rate: f64) -> Result<(), ConfigError> {
        Self::set_rate("fault_rate", rate, &self.control.fault_ppm, None)
    }

    /// Sets the outcome injection rate.
    ///
    /// # Errors
    ///
    /// When `rate` is not within `0.0..=1.0`, or is above zero and the layer has no outcome
    /// generator.
    pub fn set_outcome_rate(&self, rate: f64) -> Result<(), ConfigError> {
        let needs = (self.control.has_outcome, "needs an outcome generator (`outcome_with`)");
        Self::set_rate("outcome_rate", rate, &self.control.outcome_ppm, Some(needs))
    }

    /// Sets the latency injection rate.
    ///
    /// # Errors
    ///
    /// When `rate` is not within `0.0..=1.0`, or is above zero and the layer has neither a
    /// latency nor a latency closure.
    pub fn set_latency_rate(&self, rate: f64) -> Result<(), ConfigError> {
        let has = self.control.has_latency_fn || !self.control.latency().is_zero();
        let needs = (has, "needs a latency (`latency` or `latency_with`)");
        Self::set_rate("latency_rate", rate, &self.control.latency_ppm, Some(needs))
    }

    /// Sets the hang injection rate.
    ///
    /// # Errors
    ///
    /// When `rate` is not within `0.0..=1.0`.
    pub fn set_hang_rate(&self, rate: f64) -> Result<(), ConfigError> {
        Self::set_rate("hang_rate", rate, &self.control.hang_ppm, None)
    }

    /// Checks `rate` (and, above zero, that the layer has what it injects) and stores it.
    fn set_rate(
        field: &'static str,
        rate: f64,
        ppm: &AtomicU32,
        needs: Option<(bool, &'static str)>,
    ) -> Result<(), ConfigError> {
        ensure_ratio(field, rate)?;
        if let Some((available, rule)) = needs {
            ensure(rate == 0.0 || available, field, rule)?;
        }
        ppm.store(to_ppm(rate), Ordering::Relaxed);
        Ok(())
    }

    /// Sets the fixed injected latency (not used when the layer has a latency closure).
    ///
    /// # Errors
    ///
    /// When `latency` is zero.
    pub fn set_latency(&self, latency: Duration) -> Result<(), ConfigError> {
        ensure(!latency.is_zero(), "latency", "must be greater than zero")?;
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.control.latency_nanos.store(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// The injection rates now (rounded to parts per million).
    pub fn rates(&self) -> ChaosRates {
        let c = &self.control;
        ChaosRates {
            fault: from_ppm(c.fault_ppm.load(Ordering::Relaxed)),
            outcome: from_ppm(c.outcome_ppm.load(Ordering::Relaxed)),
            latency: from_ppm(c.latency_ppm.load(Ordering::Relaxed)),
            hang: from_ppm(c.hang_ppm.load(Ordering::Relaxed)),
        }
    }

    /// The fixed injected latency now.
    pub fn latency(&self) -> Duration {
        self.control.latency()
    }

    /// The counters right now.
    pub fn snapshot(&self) -> ChaosSnapshot {
        let c = &self.control;
        ChaosSnapshot {
            considered: c.considered.get(),
            faults: c.faults.get(),
            outcomes: c.outcomes.get(),
            latencies: c.latencies.get(),
            hangs: c.hangs.get(),
        }
    }

    /// Registers a listener for every [`ChaosEvent`] published from now on. A listener that
    /// panics is caught and logged; it misses that event.
    pub fn on_event<OnEvent>(&self, listener: OnEvent)
    where
        OnEvent: Fn(&ChaosEvent) + Send + Sync + 'static,
    {
        self.control.bus.subscribe(listener);
    }
}

/// The injection rates of a chaos layer (see [`ChaosHandle::rates`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ChaosRates {
    /// Fault injection rate.
    pub fault: f64,
    /// Outcome injection rate.
    pub outcome: f64,
    /// Latency injection rate.
    pub latency: f64,
    /// Hang injection rate.
    pub hang: f64,
}

/// The counters of a chaos layer at one moment (see [`ChaosHandle::snapshot`]).
///
/// Exported with the `metrics` feature as `palisade_chaos_<field>_total`, label `name`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosSnapshot {
    /// Calls considered for injection: made while the layer was enabled with a rate above
    /// zero, and accepted by the predicate. (Other calls are not counted, so that a quiet
    /// layer costs nothing.)
    pub considered: u64,
    /// Faults injected.
    pub faults: u64,
    /// Substitute responses injected.
    pub outcomes: u64,
    /// Delays injected.
    pub latencies: u64,
    /// Hangs injected.
    pub hangs: u64,
}
