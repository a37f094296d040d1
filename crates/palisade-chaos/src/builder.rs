//! [`ChaosBuilder`]: a [`ChaosConfig`] plus what cannot be serialised (generators, the
//! predicate, listeners).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::__private::AtomicRng;
use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::BoxError;

use crate::config::ChaosConfig;
use crate::event::ChaosEvent;
use crate::handle::{to_ppm, Control};
use crate::layer::{ChaosLayer, FaultFn, LatencyFn, OutcomeFn, Predicate, Shared};

/// Builds a [`ChaosLayer`]; made by [`ChaosLayer::builder`] or
/// [`ChaosConfig::into_builder`].
#[must_use]
pub struct ChaosBuilder<Req, Res> {
    config: ChaosConfig,
    fault: Option<FaultFn<Req>>,
    outcome: Option<OutcomeFn<Req, Res>>,
    latency_fn: Option<LatencyFn<Req>>,
    predicate: Option<Predicate<Req>>,
    listeners: Vec<Listener<ChaosEvent>>,
}

impl<Req, Res> fmt::Debug for ChaosBuilder<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosBuilder")
            .field("config", &self.config)
            .field("fault", &self.fault.is_some())
            .field("outcome", &self.outcome.is_some())
            .field("latency_fn", &self.latency_fn.is_some())
            .field("predicate", &self.predicate.is_some())
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl<Req, Res> Default for ChaosBuilder<Req, Res> {
    fn default() -> Self {
        Self::from_config(ChaosConfig::default())
    }
}

impl<Req, Res> ChaosBuilder<Req, Res> {
    pub(crate) fn from_config(config: ChaosConfig) -> Self {
        Self { config, fault: None, outcome: None, latency_fn: None, predicate: None, listeners: Vec::new() }
    }

    /// Replaces every setting with `config` (generators, predicate and listeners are kept).
    pub fn config(mut self, config: ChaosConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`ChaosConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`ChaosConfig::enabled`].
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// Sets [`ChaosConfig::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Sets [`ChaosConfig::fault_rate`].
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.config.fault_rate = rate;
        self
    }

    /// Sets [`ChaosConfig::outcome_rate`].
    pub fn outcome_rate(mut self, rate: f64) -> Self {
        self.config.outcome_rate = rate;
        self
    }

    /// Sets [`ChaosConfig::latency_rate`].
    pub fn latency_rate(mut self, rate: f64) -> Self {
        self.config.latency_rate = rate;
        self
    }

    /// Sets [`ChaosConfig::hang_rate`].
    pub fn hang_rate(mut self, rate: f64) -> Self {
        self.config.hang_rate = rate;
        self
    }

    /// Sets [`ChaosConfig::latency`].
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = Some(latency);
        self
    }

    /// Makes the injected error from the request (default: [`InjectedFault`](crate::InjectedFault)).
    pub fn fault_with<F, E>(mut self, fault: F) -> Self
    where
        F: Fn(&Req) -> E + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        self.fault = Some(Box::new(move |req: &Req| fault(req).into()));
        self
    }

    /// Makes the substitute response from the request (needed for an outcome rate above 0).
    pub fn outcome_with<F>(mut self, outcome: F) -> Self
    where
        F: Fn(&Req) -> Res + Send + Sync + 'static,
    {
        self.outcome = Some(Box::new(outcome));
        self
    }

    /// Chooses the injected delay from the request (takes precedence over
    /// [`latency`](Self::latency)).
    pub fn latency_with<F>(mut self, latency: F) -> Self
    where
        F: Fn(&Req) -> Duration + Send + Sync + 'static,
    {
        self.latency_fn = Some(Box::new(latency));
        self
    }

    /// Injects only into requests for which `predicate` returns `true` (others pass
    /// untouched and draw nothing).
    pub fn inject_when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Req) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Box::new(predicate));
        self
    }

    /// Registers a listener for every [`ChaosEvent`]. A listener that panics is caught and
    /// logged; it misses that event.
    pub fn on_event<OnEvent>(mut self, listener: OnEvent) -> Self
    where
        OnEvent: Fn(&ChaosEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] as [`ChaosConfig::validate`], or when a latency rate has no latency
    /// (`latency` or `latency_with`) or an outcome rate has no outcome generator.
    pub fn build(self) -> Result<ChaosLayer<Req, Res>, ConfigError> {
        let config = &self.config;
        config.validate()?;
        ensure(
            config.latency_rate == 0.0 || config.latency.is_some() || self.latency_fn.is_some(),
            "latency_rate",
            "needs a latency (`latency` or `latency_with`)",
        )?;
        ensure(
            config.outcome_rate == 0.0 || self.outcome.is_some(),
            "outcome_rate",
            "needs an outcome generator (`outcome_with`)",
        )?;
        Ok(self.build_unchecked())
    }

    /// Builds without validating (for [`ChaosLayer::new`], whose settings are valid).
    pub(crate) fn build_unchecked(self) -> ChaosLayer<Req, Res> {
        let config = self.config;
        let rng = config.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded);
        let name: Arc<str> = config.name.into();
        let bus = EventBus::with_listeners("chaos", name.clone(), self.listeners);
        let mut control = Control::new(name, bus, rng);
        control.has_outcome = self.outcome.is_some();
        control.has_latency_fn = self.latency_fn.is_some();
        *control.enabled.get_mut() = config.enabled;
        *control.fault_ppm.get_mut() = to_ppm(config.fault_rate);
        *control.outcome_ppm.get_mut() = to_ppm(config.outcome_rate);
        *control.latency_ppm.get_mut() = to_ppm(config.latency_rate);
        *control.hang_ppm.get_mut() = to_ppm(config.hang_rate);
        *control.latency_nanos.get_mut() =
            config.latency.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        ChaosLayer::from_shared(Arc::new(Shared {
            control: Arc::new(control),
            fault: self.fault,
            outcome: self.outcome,
            latency: self.latency_fn,
            predicate: self.predicate,
        }))
    }
}
