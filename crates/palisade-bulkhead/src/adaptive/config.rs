//! `AdaptiveLimitConfig`: every option of an adaptive limit that is data, its default and its
//! validation.

use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::WhenFull;

use super::algorithm::{Aimd, Gradient2, LimitAlgorithm, Vegas};

/// Every option of an adaptive limit that is data: the storage of
/// [`AdaptiveLimitBuilder`](super::AdaptiveLimitBuilder) and (feature `serde`) the form it
/// takes in a config file. What is code — the classifier, `partition_by`, `bypass`,
/// listeners, a custom algorithm or Vegas' functions — is added on the builder.
///
/// | field | default |
/// |---|---|
/// | [`name`](Self::name) | `"adaptive_limit"` |
/// | [`algorithm`](Self::algorithm) | Vegas with concurrency-limits' defaults |
/// | [`when_full`](Self::when_full) | [`WhenFull::Refuse`]: shed at once at the limit |
/// | [`max_queue`](Self::max_queue) | 100 (concurrency-limits' `LifoBlockingLimiter` backlog size) |
/// | [`partitions`](Self::partitions) | none |
/// | [`shed_when_inner_not_ready`](Self::shed_when_inner_not_ready) | `false`: wait for the inner service |
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_bulkhead::adaptive::AdaptiveLimitConfig;
///
/// let config: AdaptiveLimitConfig = serde_json::from_str(r#"{
///     "name": "search",
///     "algorithm": { "gradient2": { "initial_limit": 40, "min_limit": 10, "max_limit": 400 } },
///     "when_full": { "wait": "50ms" },
///     "max_queue": 100
/// }"#).unwrap();
/// let layer = config.into_builder().build().unwrap();
/// assert_eq!(layer.handle().limit(), 40);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct AdaptiveLimitConfig {
    /// The name in rejections, events and metric labels. Default `"adaptive_limit"`.
    pub name: String,
    /// The algorithm and its settings. Default: [`Vegas`] with its defaults (as
    /// concurrency-limits). An algorithm given in code
    /// ([`AdaptiveLimitBuilder::algorithm`](super::AdaptiveLimitBuilder::algorithm)) takes
    /// its place.
    pub algorithm: AlgorithmConfig,
    /// What a call over the limit does: shed at once with
    /// [`Overloaded`](crate::error::Overloaded) (the default), or wait in the LIFO backlog up
    /// to the bound (concurrency-limits' `LifoBlockingLimiter`), newest first. A waiting call
    /// uses tokio's timer.
    pub when_full: WhenFull,
    /// How many calls may wait in the backlog (at least 1 when `when_full` waits); the next
    /// is shed. Default 100, concurrency-limits' `LifoBlockingLimiter` backlog size.
    pub max_queue: usize,
    /// Partitions guaranteed a share of the limit, picked by
    /// [`partition_by`](super::AdaptiveLimitBuilder::partition_by). Default none.
    pub partitions: Vec<PartitionConfig>,
    /// Shed with [`Overloaded`](crate::error::Overloaded) while the inner service is not
    /// ready, as tower's `LoadShed` (no capacity taken, no sample). Default `false`.
    pub shed_when_inner_not_ready: bool,
}

/// Calls a backlog holds when not told otherwise (concurrency-limits' `LifoBlockingLimiter`).
pub const DEFAULT_MAX_QUEUE: usize = 100;

impl Default for AdaptiveLimitConfig {
    fn default() -> Self {
        Self {
            name: "adaptive_limit".to_owned(),
            algorithm: AlgorithmConfig::Vegas(VegasConfig::default()),
            when_full: WhenFull::Refuse,
            max_queue: DEFAULT_MAX_QUEUE,
            partitions: Vec::new(),
            shed_when_inner_not_ready: false,
        }
    }
}

/// One partition of an [`AdaptiveLimitConfig`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct PartitionConfig {
    /// The name `partition_by` answers for its calls.
    pub name: String,
    /// Its guaranteed share of the limit, in `[0, 1]` (a share of 0 still guarantees one
    /// call, as concurrency-limits); the shares sum to at most 1.
    pub ratio: f64,
}

impl AdaptiveLimitConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// Invalid algorithm settings (the field named with its algorithm: `vegas.max_limit`); a
    /// partition ratio outside `[0, 1]` or ratios summing above 1; a waiting `when_full`
    /// with `max_queue` zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.algorithm.to_algorithm().validate()?;
        self.validate_rest()
    }

    /// Everything but the algorithm (which a builder may have replaced with code).
    pub(crate) fn validate_rest(&self) -> Result<(), ConfigError> {
        let mut total = 0.0;
        for PartitionConfig { name, ratio } in &self.partitions {
            // As concurrency-limits: [0, 1]; a share of 0 still guarantees one call.
            ensure(
                ratio.is_finite() && (0.0..=1.0).contains(ratio),
                "partitions",
                format!("ratio of `{name}` must be in [0, 1]"),
            )?;
            total += ratio;
        }
        ensure(total <= 1.0 + 1e-9, "partitions", "ratios must not sum above 1.0")?;
        if self.when_full.waits() && self.max_queue == 0 {
            return Err(ConfigError::conflict(
                "max_queue",
                "when_full",
                "a waiting backlog needs room for at least 1 call",
            ));
        }
        Ok(())
    }

    /// A builder holding these settings (add a classifier, `partition_by`, listeners, then
    /// `build`).
    pub fn into_builder(self) -> super::AdaptiveLimitBuilder {
        super::AdaptiveLimitBuilder::from_config(self)
    }
}

/// One algorithm and the settings that differ from its defaults.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case", deny_unknown_fields))]
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
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[allow(missing_docs)]
pub struct AimdConfig {
    pub initial_limit: Option<usize>,
    pub min_limit: Option<usize>,
    pub max_limit: Option<usize>,
    pub backoff_ratio: Option<f64>,
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub timeout: Option<Duration>,
}

/// [`Vegas`] settings; absent fields keep the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
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
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
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
    pub drops_as_samples: bool,
}

/// Applies each set field of `$cfg` to `$alg` through its setter of the same name.
macro_rules! apply {
    ($alg:expr, $cfg:expr, $($field:ident),*) => {{
        let mut alg = $alg;
        $(if let Some(v) = $cfg.$field { alg = alg.$field(v); })*
        alg
    }};
}

impl AlgorithmConfig {
    /// The algorithm these settings describe.
    pub fn to_algorithm(&self) -> Box<dyn LimitAlgorithm> {
        match self.clone() {
            Self::Aimd(c) => Box::new(apply!(
                Aimd::default(),
                c,
                initial_limit,
                min_limit,
                max_limit,
                backoff_ratio,
                timeout
            )),
            Self::Vegas(c) => Box::new(apply!(
                Vegas::default(),
                c,
                initial_limit,
                min_limit,
                max_limit,
                smoothing,
                probe_multiplier,
                alpha,
                beta
            )),
            Self::Gradient2(c) => {
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
                Box::new(if c.drops_as_samples { g.drops_as_samples() } else { g })
            }
        }
    }
}
