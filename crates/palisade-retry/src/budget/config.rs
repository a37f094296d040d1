//! `BudgetConfig`: a retry budget's settings, as configs hold them.

use std::time::Duration;

use palisade_core::config::ConfigError;

use super::RetryBudget;

/// The settings of a retry budget, as [`RetryConfig::budget`](crate::RetryConfig::budget)
/// and [`HedgeConfig::budget`](crate::hedge::HedgeConfig::budget) hold them: each layer
/// built from them gets a budget of its own (give the builders one [`RetryBudget`] to
/// share it). In a config file (feature `serde`): `"unlimited"`,
/// `{"ratio": {"ttl": "10s", "min_per_sec": 10, "ratio": 0.2}}` or
/// `{"token_bucket": {"max_tokens": 10, "token_ratio": 0.1}}`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case", deny_unknown_fields))]
#[non_exhaustive]
pub enum BudgetConfig {
    /// [`RetryBudget::unlimited`].
    Unlimited,
    /// [`RetryBudget::ratio`].
    Ratio {
        /// The window (1 s to 60 s).
        #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
        ttl: Duration,
        /// Retries per second whatever the traffic.
        min_per_sec: u32,
        /// Retries per request (0 to 100).
        ratio: f64,
    },
    /// [`RetryBudget::token_bucket`].
    TokenBucket {
        /// Bucket size (1 to 1000).
        max_tokens: u32,
        /// Tokens given back per success.
        token_ratio: f64,
    },
}

impl Default for BudgetConfig {
    /// Finagle's: `ratio(10 s, 10, 0.2)`.
    fn default() -> Self {
        Self::Ratio { ttl: Duration::from_secs(10), min_per_sec: 10, ratio: 0.2 }
    }
}

impl BudgetConfig {
    /// A new budget with these settings (`budget.…` names a bad field).
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        match *self {
            Self::Unlimited => Ok(RetryBudget::unlimited()),
            Self::Ratio { ttl, min_per_sec, ratio } => RetryBudget::ratio(ttl, min_per_sec, ratio),
            Self::TokenBucket { max_tokens, token_ratio } => {
                RetryBudget::token_bucket(max_tokens, token_ratio)
            }
        }
    }
}
