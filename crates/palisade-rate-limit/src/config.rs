//! [`RateLimitConfig`]: every option of a [`RateLimitLayer`](crate::RateLimitLayer) that a
//! settings file can hold, its default and its validation — the storage of
//! [`RateLimitBuilder`](crate::RateLimitBuilder).
//!
//! What a file cannot hold stays in code: a key function ([`keyed`](crate::RateLimitBuilder::keyed)
//! keys the config's `quota`), a weigher, a tier's condition, listeners, the clock.
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use std::time::Duration;
//! use palisade_core::when_full::WhenFull;
//! use palisade_rate_limit::{Algorithm, RateLimitConfig};
//!
//! let config: RateLimitConfig = serde_json::from_str(r#"{
//!     "name": "api",
//!     "quota": { "limit": 100, "period": "1s", "burst": 20 },
//!     "algorithm": "sliding_window_counter",
//!     "when_full": { "wait": "250ms" },
//!     "tiers": [ { "name": "daily", "quota": { "limit": 10000, "period": "1d" } } ]
//! }"#).unwrap();
//! assert_eq!(config.when_full, WhenFull::wait(Duration::from_millis(250)));
//! assert_eq!(config.algorithm, Algorithm::SlidingWindowCounter);
//! // Keyed from code: the file's quota becomes a per-client limit.
//! let layer = config.into_builder().keyed(|req: &(u32, String)| Some(req.0)).build().unwrap();
//! assert_eq!(layer.handle().name(), "api");
//! # }
//! ```

use std::sync::Arc;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::keyed::Unkeyed;
use palisade_core::when_full::WhenFull;

use crate::algorithm::Algorithm;
use crate::builder::RateLimitBuilder;
use crate::layer::RateLimitLayer;
use crate::quota::Quota;
use crate::tier::Tier;

/// Keys a keyed tier tracks by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Every option of a rate limit layer that a file can hold; see the [crate docs](crate).
///
/// With the `serde` feature it reads from and writes to any serde format; missing fields take
/// their defaults and unknown ones are refused.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// The layer's name in rejections, events and metric labels. Default `"rate_limit"`.
    pub name: String,
    /// The layer's own limit: one for all requests, or one per key when the builder is
    /// [`keyed`](RateLimitBuilder::keyed). Asked before [`tiers`](Self::tiers). Default none.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub quota: Option<Quota>,
    /// The algorithm of every limit that does not choose its own. Default token bucket.
    pub algorithm: Algorithm,
    /// What a request that cannot be admitted now does: refused at once with
    /// [`RateLimited`](palisade_core::rejection::RateLimited) (default), or waits for its slot
    /// if that is at most `max_wait` away (refused at once otherwise).
    pub when_full: WhenFull,
    /// Keyed limits: the most keys tracked; see [`LocalStore`](crate::LocalStore) for when
    /// keys are forgotten. Default [`DEFAULT_MAX_KEYS`] (100,000).
    pub max_keys: usize,
    /// Keyed limits: what a request whose key function gives no key does. Default
    /// [`Unkeyed::Reject`] with [`KeyMissing`](palisade_core::rejection::KeyMissing).
    pub when_unkeyed: Unkeyed,
    /// More global limits, asked in order after [`quota`](Self::quota). Default none.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub tiers: Vec<TierConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            name: "rate_limit".to_owned(),
            quota: None,
            algorithm: Algorithm::default(),
            when_full: WhenFull::Refuse,
            max_keys: DEFAULT_MAX_KEYS,
            when_unkeyed: Unkeyed::Reject,
            tiers: Vec::new(),
        }
    }
}

/// One more global limit of a [`RateLimitConfig`] (a keyed tier needs a key function:
/// [`Tier::keyed`] in code).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct TierConfig {
    /// The tier's name in events and in the handle. Default `"global"`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub name: Option<String>,
    /// The tier's limit.
    pub quota: Quota,
    /// The tier's algorithm. Default the layer's [`algorithm`](RateLimitConfig::algorithm).
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub algorithm: Option<Algorithm>,
}

impl TierConfig {
    /// A tier of `quota`, with the default name and algorithm.
    pub fn new(quota: Quota) -> Self {
        Self { name: None, quota, algorithm: None }
    }

    pub(crate) fn into_tier<Req: 'static>(self) -> Tier<Req> {
        let mut tier = Tier::new(self.quota);
        if let Some(name) = self.name {
            tier = tier.name(name);
        }
        if let Some(algorithm) = self.algorithm {
            tier = tier.algorithm(algorithm);
        }
        tier
    }
}

impl RateLimitConfig {
    /// Checks every field; `build` calls it. Errors name the field (`tiers[1].quota`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the name is empty, `max_keys` is zero, or a quota is invalid
    /// ([`Quota::validate`]) for its algorithm.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        ensure(self.max_keys > 0, "max_keys", "must be at least 1")?;
        if let Some(quota) = &self.quota {
            quota.validate_for(self.algorithm, "quota")?;
        }
        for (i, tier) in self.tiers.iter().enumerate() {
            if tier.name.as_deref() == Some("") {
                return Err(ConfigError::new(format!("tiers[{i}].name"), "must not be empty"));
            }
            let algorithm = tier.algorithm.unwrap_or(self.algorithm);
            tier.quota.validate_for(algorithm, "quota").map_err(|e| e.in_section(&format!("tiers[{i}]")))?;
        }
        Ok(())
    }

    /// A builder holding these settings (add a key function, tiers in code, listeners).
    pub fn into_builder<Req: 'static>(self) -> RateLimitBuilder<Req> {
        RateLimitBuilder::from_config(self)
    }

    /// The layer, validated like the builder's.
    ///
    /// # Errors
    ///
    /// As [`RateLimitBuilder::build`].
    pub fn build<Req: 'static>(self) -> Result<RateLimitLayer<Req>, ConfigError> {
        self.into_builder().build()
    }

    pub(crate) fn shared_name(&self) -> Arc<str> {
        Arc::from(self.name.as_str())
    }
}
