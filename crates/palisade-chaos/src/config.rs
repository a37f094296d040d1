//! [`ChaosConfig`]: every option of a chaos layer, its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ratio, ConfigError};

/// The settings of a [`ChaosLayer`](crate::ChaosLayer): the storage of
/// [`ChaosBuilder`](crate::ChaosBuilder) and the form a settings file takes (feature
/// `serde`). Generators and predicates are code: add them to the builder
/// [`into_builder`](Self::into_builder) gives.
///
/// Every rate is a share of calls within `0.0..=1.0` and defaults to 0 (nothing injected).
///
/// ```
/// # #[cfg(feature = "serde")] {
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
/// # }
/// # Ok::<_, palisade_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct ChaosConfig {
    /// The layer's name, in events, metric labels and [`InjectedFault`](crate::InjectedFault).
    /// Default `"chaos"`; must not be empty.
    pub name: String,
    /// Whether the layer starts enabled (default `true`); switch it later with the handle.
    pub enabled: bool,
    /// The generator's seed, so that every run makes the same decisions. Default: none, a
    /// seed from entropy (different every run).
    pub seed: Option<u64>,
    /// The share of calls answered with an injected error (default 0).
    pub fault_rate: f64,
    /// The share of calls answered with a substitute response (default 0; above 0 needs
    /// [`outcome_with`](crate::ChaosBuilder::outcome_with)).
    pub outcome_rate: f64,
    /// The share of calls delayed (default 0; above 0 needs [`latency`](Self::latency) or
    /// [`latency_with`](crate::ChaosBuilder::latency_with)).
    pub latency_rate: f64,
    /// The share of calls that hang: the inner service is called, its answer dropped, and
    /// the response future stays pending until it is dropped (default 0).
    pub hang_rate: f64,
    /// The injected delay, e.g. `"150ms"` (default none; must not be zero; changeable through
    /// the handle). A huge delay saturates to "effectively never".
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub latency: Option<Duration>,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            name: "chaos".to_owned(),
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

impl ChaosConfig {
    /// Checks every field on its own (the builder also checks that a rate above 0 has what
    /// it injects).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: an empty `name`, a rate outside `0.0..=1.0`, a
    /// zero `latency`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        ensure_ratio("fault_rate", self.fault_rate)?;
        ensure_ratio("outcome_rate", self.outcome_rate)?;
        ensure_ratio("latency_rate", self.latency_rate)?;
        ensure_ratio("hang_rate", self.hang_rate)?;
        match self.latency {
            Some(latency) => ensure_nonzero_duration("latency", latency),
            None => Ok(()),
        }
    }

    /// A builder holding these settings (validated by its `build`), to add generators, a
    /// predicate and listeners.
    pub fn into_builder<Req, Res>(self) -> crate::ChaosBuilder<Req, Res> {
        crate::ChaosBuilder::from_config(self)
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`ChaosBuilder::build`](crate::ChaosBuilder::build).
    pub fn build<Req, Res>(self) -> Result<crate::ChaosLayer<Req, Res>, ConfigError> {
        self.into_builder().build()
    }
}
