//! The builder and the `serde` configuration of [`ChaosLayer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ratio, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::rng::AtomicRng;
use palisade_core::BoxError;

use crate::event::ChaosEvent;
use crate::handle::{to_ppm, Control};
use crate::layer::{ChaosLayer, FaultFn, LatencyFn, OutcomeFn, Predicate, Shared};

/// Builds a [`ChaosLayer`]; made by [`ChaosLayer::builder`].
///
/// Every rate defaults to 0 (nothing injected) and must be within `0.0..=1.0`.
pub struct ChaosBuilder<Req, Res> {
    name: Arc<str>,
    enabled: bool,
    seed: Option<u64>,
    fault_rate: f64,
    outcome_rate: f64,
    latency_rate: f64,
    hang_rate: f64,
    latency: Option<Duration>,
    fault: Option<FaultFn<Req>>,
    outcome: Option<OutcomeFn<Req, Res>>,
    latency_fn: Option<LatencyFn<Req>>,
    predicate: Option<Predicate<Req>>,
    listeners: Vec<Listener<ChaosEvent>>,
}

impl<Req, Res> fmt::Debug for ChaosBuilder<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosBuilder")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("seed", &self.seed)
            .field("fault_rate", &self.fault_rate)
            .field("outcome_rate", &self.outcome_rate)
            .field("latency_rate", &self.latency_rate)
            .field("hang_rate", &self.hang_rate)
            .field("latency", &self.latency)
            .field("fault", &self.fault.is_some())
            .field("outcome", &self.outcome.is_some())
            .field("latency_fn", &self.latency_fn.is_some())
            .field("predicate", &self.predicate.is_some())
            .finish_non_exhaustive()
    }
}

impl<Req, Res> Default for ChaosBuilder<Req, Res> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Req, Res> ChaosBuilder<Req, Res> {
    /// A builder with the defaults: name `"chaos"`, enabled, every rate 0, seeded from
    /// entropy.
    pub fn new() -> Self {
        Self {
            name: Arc::from("chaos"),
            enabled: true,
            seed: None,
            fault_rate: 0.0,
            outcome_rate: 0.0,
            latency_rate: 0.0,
            hang_rate: 0.0,
            latency: None,
            fault: None,
            outcome: None,
            latency_fn: None,
            predicate: None,
            listeners: Vec::new(),
        }
    }

    /// The layer's name, used in events, metric labels and [`InjectedFault`](crate::InjectedFault)
    /// (default `"chaos"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether the layer starts enabled (default `true`); switch it later with the handle.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Seeds the generator so that every run makes the same decisions (default: a seed from
    /// entropy, different every run).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The share of calls answered with an injected error.
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = rate;
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

    /// The share of calls answered with a substitute response (needs
    /// [`outcome_with`](Self::outcome_with)).
    pub fn outcome_rate(mut self, rate: f64) -> Self {
        self.outcome_rate = rate;
        self
    }

    /// Makes the substitute response from the request.
    pub fn outcome_with<F>(mut self, outcome: F) -> Self
    where
        F: Fn(&Req) -> Res + Send + Sync + 'static,
    {
        self.outcome = Some(Box::new(outcome));
        self
    }

    /// The share of calls delayed (needs [`latency`](Self::latency) or
    /// [`latency_with`](Self::latency_with)).
    pub fn latency_rate(mut self, rate: f64) -> Self {
        self.latency_rate = rate;
        self
    }

    /// The injected delay (changeable through the handle).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
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

    /// The share of calls that hang: the inner service is called, its answer dropped, and the
    /// response future stays pending until it is dropped.
    pub fn hang_rate(mut self, rate: f64) -> Self {
        self.hang_rate = rate;
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

    /// Registers a listener for every [`ChaosEvent`].
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&ChaosEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(crate::error::guard_listener(listener)));
        self
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the name is empty, a rate is outside `0.0..=1.0`, the latency is
    /// zero, a latency rate has no latency, or an outcome rate has no outcome generator.
    pub fn build(self) -> Result<ChaosLayer<Req, Res>, ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        ensure_ratio("fault_rate", self.fault_rate)?;
        ensure_ratio("outcome_rate", self.outcome_rate)?;
        ensure_ratio("latency_rate", self.latency_rate)?;
        ensure_ratio("hang_rate", self.hang_rate)?;
        if let Some(latency) = self.latency {
            ensure_nonzero_duration("latency", latency)?;
        }
        ensure(
            self.latency_rate == 0.0 || self.latency.is_some() || self.latency_fn.is_some(),
            "latency_rate",
            "needs a latency (`latency` or `latency_with`)",
        )?;
        ensure(
            self.outcome_rate == 0.0 || self.outcome.is_some(),
            "outcome_rate",
            "needs an outcome generator (`outcome_with`)",
        )?;

        let rng = self.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded);
        let bus = EventBus::with_listeners("chaos", self.name.clone(), self.listeners);
        let mut control = Control::new(self.name, bus, rng);
        control.has_outcome = self.outcome.is_some();
        control.has_latency_fn = self.latency_fn.is_some();
        *control.enabled.get_mut() = self.enabled;
        *control.fault_ppm.get_mut() = to_ppm(self.fault_rate);
        *control.outcome_ppm.get_mut() = to_ppm(self.outcome_rate);
        *control.latency_ppm.get_mut() = to_ppm(self.latency_rate);
        *control.hang_ppm.get_mut() = to_ppm(self.hang_rate);
        *control.latency_nanos.get_mut() =
            self.latency.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));

        Ok(ChaosLayer::from_shared(Arc::new(Shared {
            control: Arc::new(control),
            fault: self.fault,
            outcome: self.outcome,
            latency: self.latency_fn,
            predicate: self.predicate,
        })))
    }
}

/// The `serde` form of a chaos layer's settings. Generators and predicates are code: add them
/// to the builder [`into_builder`](Self::into_builder) returns.
///
/// ```
/// use palisade_chaos::{ChaosConfig, ChaosLayer};
///
/// let config: ChaosConfig = serde_json::from_str(
///     r#"{ "name": "backend", "seed": 42, "fault_rate": 0.1, "latency_rate": 0.2, "latency": "150ms" }"#,
/// ).unwrap();
/// let layer: ChaosLayer<(), ()> = config.build()?;
/// assert_eq!(layer.handle().rates().fault, 0.1);
///
/// let bad: ChaosConfig = serde_json::from_str(r#"{ "hang_rate": 1.5 }"#).unwrap();
/// assert_eq!(bad.build::<(), ()>().unwrap_err().field(), "hang_rate");
/// # Ok::<_, palisade_core::ConfigError>(())
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ChaosConfig {
    /// The layer's name (default `"chaos"`).
    pub name: Option<String>,
    /// Whether the layer starts enabled (default `true`).
    pub enabled: bool,
    /// The generator's seed (default: from entropy).
    pub seed: Option<u64>,
    /// Fault injection rate (default 0).
    pub fault_rate: f64,
    /// Outcome injection rate (default 0; needs a generator added to the builder).
    pub outcome_rate: f64,
    /// Latency injection rate (default 0).
    pub latency_rate: f64,
    /// Hang injection rate (default 0).
    pub hang_rate: f64,
    /// The injected delay, e.g. `"150ms"`.
    #[serde(with = "palisade_core::duration::serde::option")]
    pub latency: Option<Duration>,
}

#[cfg(feature = "serde")]
impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            name: None,
            enabled: true,
            seed: None,
            fault_rate: 0.0,
            outcome_rate: 0.0,
            latency_rate: 0.0,
            hang_rate: 0.0,
            latency: None,
        }
    }
}

#[cfg(feature = "serde")]
impl ChaosConfig {
    /// A builder holding these settings (validated by its `build`).
    pub fn into_builder<Req, Res>(self) -> ChaosBuilder<Req, Res> {
        let mut b = ChaosBuilder::new()
            .enabled(self.enabled)
            .fault_rate(self.fault_rate)
            .outcome_rate(self.outcome_rate)
            .latency_rate(self.latency_rate)
            .hang_rate(self.hang_rate);
        if let Some(name) = self.name {
            b = b.name(name);
        }
        if let Some(seed) = self.seed {
            b = b.seed(seed);
        }
        if let Some(latency) = self.latency {
            b = b.latency(latency);
        }
        b
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`ChaosBuilder::build`].
    pub fn build<Req, Res>(self) -> Result<ChaosLayer<Req, Res>, ConfigError> {
        self.into_builder().build()
    }
}
