//! `HedgeConfig`: every option of a hedge layer, its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};

use super::{HedgeBuilder, HedgeLayer, HedgeMode};
use crate::budget::BudgetConfig;

/// The most attempts one hedged call may run (every one may be in flight at once, so the
/// bound is checked when the layer is built).
pub(crate) const MAX_HEDGED_ATTEMPTS: u32 = 100;

/// Every option of a hedge layer, its default and its check: the storage of
/// [`HedgeBuilder`], and (feature `serde`) the form it takes in a config file. The
/// classifier, the replay hook, listeners and a shared budget are added on the builder.
///
/// `name`, `max_attempts`, `max_retry_after` and `budget` mean what they mean in
/// [`RetryConfig`](crate::RetryConfig) and feed the same engine, but are fields of each
/// config rather than a shared nested one: serde cannot flatten a struct into a config that
/// refuses unknown fields, and their defaults and bounds differ (2 attempts, at most 100).
///
/// | field | default |
/// |---|---|
/// | [`name`](Self::name) | `"hedge"` |
/// | [`max_attempts`](Self::max_attempts) | 2 |
/// | [`mode`](Self::mode) | a hedge after 100 ms |
/// | [`max_retry_after`](Self::max_retry_after) | 30 s |
/// | [`budget`](Self::budget) | Finagle's, one per layer |
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_retry::hedge::HedgeConfig;
///
/// let config: HedgeConfig =
///     serde_json::from_str(r#"{ "max_attempts": 3, "mode": { "delay": "50ms" } }"#).unwrap();
/// let layer = config.build().unwrap();
/// assert_eq!(layer.handle().current_delay(), Some(std::time::Duration::from_millis(50)));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct HedgeConfig {
    /// The name in events and metric labels. Default `"hedge"`.
    pub name: String,
    /// Attempts in all, in flight at once at most: 1 to 100. Default 2.
    pub max_attempts: u32,
    /// When the next attempt starts. Default [`HedgeMode::Delay`] of 100 ms; a zero delay is
    /// parallel mode.
    pub mode: HedgeMode,
    /// The longest server pushback (gRPC `grpc-retry-pushback-ms`) honoured before the next
    /// hedge (default 30 s, as the retry layer's
    /// [`max_retry_after`](crate::RetryConfig::max_retry_after)). A longer pushback stops
    /// new hedges as "do not retry" does: the attempts in flight go on, and when none is
    /// left the call ends with the last failure
    /// ([`GiveUpReason::HintTooLong`](crate::GiveUpReason::HintTooLong)) instead of waiting
    /// for as long as the server asked — a hostile or broken server cannot hold a hedged
    /// call for days.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub max_retry_after: Duration,
    /// The budget's settings; each layer gets a budget of its own
    /// ([`HedgeBuilder::budget`] shares one instead). Default Finagle's.
    pub budget: BudgetConfig,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            name: "hedge".to_owned(),
            max_attempts: 2,
            mode: HedgeMode::Delay(Duration::from_millis(100)),
            max_retry_after: Duration::from_secs(30),
            budget: BudgetConfig::default(),
        }
    }
}

impl HedgeConfig {
    /// Checks every option; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (1..=MAX_HEDGED_ATTEMPTS).contains(&self.max_attempts),
            "max_attempts",
            "must be between 1 and 100",
        )?;
        if let HedgeMode::Percentile { percentile, .. } = self.mode {
            palisade_core::config::ensure_ratio("latency_percentile", percentile)?;
        }
        self.budget.build().map(drop)
    }

    /// A builder holding these settings (add a classifier, replay, listeners…).
    pub fn into_builder(self) -> HedgeBuilder {
        HedgeBuilder::from_config(self)
    }

    /// Validates and builds the layer (default classifier, `Req: Clone`).
    pub fn build(self) -> Result<HedgeLayer, ConfigError> {
        self.into_builder().build()
    }
}
