//! `AdaptiveLimitConfig` (feature `serde`): an adaptive limit's settings as data.

use std::time::Duration;

use palisade_core::config::ConfigError;

use super::algorithm::{Aimd, Gradient2, Vegas};
use super::layer::{AdaptiveLimitBuilder, AdaptiveLimitLayer};

/// An adaptive limit's settings as data, e.g. from a config file. Classifier, partitions and
/// listeners are code: add them to [`into_builder`](Self::into_builder)'s builder.
///
/// ```
/// use palisade_bulkhead::adaptive::AdaptiveLimitConfig;
///
/// let config: AdaptiveLimitConfig = serde_json::from_str(r#"{
///     "name": "search",
///     "algorithm": { "gradient2": { "initial_limit": 40, "min_limit": 10, "max_limit": 400 } },
///     "backlog": { "max_len": 100, "max_wait": "50ms" }
/// }"#).unwrap();
/// let layer = config.build().unwrap();
/// assert_eq!(layer.handle().limit(), 40);
/// ```
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveLimitConfig {
    /// See [`AdaptiveLimitBuilder::name`].
    #[serde(default)]
    pub name: Option<String>,
    /// The algorithm and its settings; absent = Vegas with its defaults.
    #[serde(default)]
    pub algorithm: Option<AlgorithmConfig>,
    /// See [`AdaptiveLimitBuilder::backlog`]; absent = no backlog.
    #[serde(default)]
    pub backlog: Option<BacklogConfig>,
}

/// The backlog part of an [`AdaptiveLimitConfig`].
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacklogConfig {
    /// Calls that may wait.
    pub max_len: usize,
    /// How long each may wait.
    #[serde(with = "palisade_core::duration::serde")]
    pub max_wait: Duration,
}

/// One algorithm and the settings that differ from its defaults.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AlgorithmConfig {
    /// [`Aimd`].
    Aimd(AimdConfig),
    /// [`Vegas`].
    Vegas(VegasConfig),
    /// [`Gradient2`].
    Gradient2(Gradient2Config),
}

/// [`Aimd`] settings; absent fields keep the defaults.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AimdConfig {
    pub initial_limit: Option<usize>,
    pub min_limit: Option<usize>,
    pub max_limit: Option<usize>,
    pub backoff_ratio: Option<f64>,
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub timeout: Option<Duration>,
}

/// [`Vegas`] settings; absent fields keep the defaults.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct VegasConfig {
    pub initial_limit: Option<usize>,
    pub min_limit: Option<usize>,
    pub max_limit: Option<usize>,
    pub smoothing: Option<f64>,
    pub probe_multiplier: Option<usize>,
    /// A constant alpha (the functions of the limit are code: use the builder).
    pub alpha: Option<usize>,
    /// A constant beta.
    pub beta: Option<usize>,
}

/// [`Gradient2`] settings; absent fields keep the defaults.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Gradient2Config {
    pub initial_limit: Option<usize>,
    pub min_limit: Option<usize>,
    pub max_limit: Option<usize>,
    pub smoothing: Option<f64>,
    pub queue_size: Option<usize>,
    pub rtt_tolerance: Option<f64>,
    pub long_window: Option<usize>,
    pub drop_backoff: Option<f64>,
    /// `true`: drops are ordinary samples, as concurrency-limits
    /// ([`Gradient2::drops_as_samples`]).
    #[serde(default)]
    pub drops_as_samples: bool,
}

macro_rules! apply {
    ($alg:expr, $cfg:expr, $($field:ident),*) => {{
        let mut alg = $alg;
        $(if let Some(v) = $cfg.$field { alg = alg.$field(v); })*
        alg
    }};
}

impl AdaptiveLimitConfig {
    /// The builder with these settings (add a classifier, partitions, listeners, then
    /// `build`).
    pub fn into_builder(self) -> AdaptiveLimitBuilder {
        let mut b = AdaptiveLimitLayer::builder();
        if let Some(name) = self.name {
            b = b.name(name);
        }
        match self.algorithm {
            Some(AlgorithmConfig::Aimd(c)) => {
                b = b.algorithm(apply!(
                    Aimd::default(),
                    c,
                    initial_limit,
                    min_limit,
                    max_limit,
                    backoff_ratio,
                    timeout
                ));
            }
            Some(AlgorithmConfig::Vegas(c)) => {
                b = b.algorithm(apply!(
                    Vegas::default(),
                    c,
                    initial_limit,
                    min_limit,
                    max_limit,
                    smoothing,
                    probe_multiplier,
                    alpha,
                    beta
                ));
            }
            Some(AlgorithmConfig::Gradient2(c)) => {
                let drops_as_samples = c.drops_as_samples;
                let g = apply!(
                    Gradient2::default(),
                    c,
                    initial_limit,
                    min_limit,
                    max_limit,
                    smoothing,
                    queue_size,
                    rtt_tolerance,
                    long_window,
                    drop_backoff
                );
                b = b.algorithm(if drops_as_samples { g.drops_as_samples() } else { g });
            }
            None => {}
        }
        if let Some(backlog) = self.backlog {
            b = b.backlog(backlog.max_len, backlog.max_wait);
        }
        b
    }

    /// Validates and builds the layer (default classifier, no partitions).
    ///
    /// # Errors
    ///
    /// As [`AdaptiveLimitBuilder::build`].
    pub fn build(self) -> Result<AdaptiveLimitLayer, ConfigError> {
        self.into_builder().build()
    }
}
