//! [`RateLimitBuilder`]: a [`RateLimitConfig`] plus what a file cannot hold (key function,
//! tiers in code, weigher, listeners, clock).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use palisade_core::clock::Clock;
use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::Listener;
use palisade_core::keyed::Unkeyed;
use palisade_core::when_full::WhenFull;

use crate::algorithm::Algorithm;
use crate::config::{RateLimitConfig, TierConfig};
use crate::event::RateLimitEvent;
use crate::layer::RateLimitLayer;
use crate::quota::Quota;
use crate::shared::Weigher;
use crate::tier::{Defaults, Tier};

/// Makes the tier that keys the config's quota.
type KeyTier<Req> = Box<dyn FnOnce(Quota) -> Tier<Req> + Send + Sync>;

/// Builds a [`RateLimitLayer`]; from [`RateLimitLayer::builder`] or
/// [`RateLimitConfig::into_builder`].
///
/// ```
/// use std::time::Duration;
/// use palisade_core::keyed::Unkeyed;
/// use palisade_core::when_full::WhenFull;
/// use palisade_rate_limit::{Quota, RateLimitLayer};
///
/// struct Req { api_key: Option<String> }
///
/// let per_key = RateLimitLayer::builder()
///     .name("per_api_key")
///     .quota(Quota::per_second(5).burst(10))
///     .keyed(|r: &Req| r.api_key.clone())
///     .max_keys(10_000)
///     .when_unkeyed(Unkeyed::Shared)
///     .when_full(WhenFull::wait(Duration::from_millis(200)))
///     .build()
///     .unwrap();
/// # let _ = per_key;
/// ```
pub struct RateLimitBuilder<Req> {
    config: RateLimitConfig,
    key: Option<KeyTier<Req>>,
    tiers: Vec<Tier<Req>>,
    weigher: Option<Weigher<Req>>,
    listeners: Vec<Listener<RateLimitEvent>>,
    clock: Clock,
}

impl<Req> fmt::Debug for RateLimitBuilder<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("config", &self.config)
            .field("keyed", &self.key.is_some())
            .field("tiers", &self.tiers)
            .field("weighted", &self.weigher.is_some())
            .field("listeners", &self.listeners.len())
            .field("clock", &self.clock)
            .finish()
    }
}

impl<Req: 'static> RateLimitBuilder<Req> {
    pub(crate) fn from_config(config: RateLimitConfig) -> Self {
        Self {
            config,
            key: None,
            tiers: Vec::new(),
            weigher: None,
            listeners: Vec::new(),
            clock: Clock::default(),
        }
    }

    /// Sets [`RateLimitConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`RateLimitConfig::quota`], the layer's own limit (per key with
    /// [`keyed`](Self::keyed)).
    pub fn quota(mut self, quota: Quota) -> Self {
        self.config.quota = Some(quota);
        self
    }

    /// Sets [`RateLimitConfig::algorithm`].
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.config.algorithm = algorithm;
        self
    }

    /// Sets [`RateLimitConfig::when_full`].
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.config.when_full = when_full;
        self
    }

    /// Sets [`RateLimitConfig::max_keys`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.config.max_keys = max_keys;
        self
    }

    /// Sets [`RateLimitConfig::when_unkeyed`].
    pub fn when_unkeyed(mut self, when_unkeyed: Unkeyed) -> Self {
        self.config.when_unkeyed = when_unkeyed;
        self
    }

    /// Keeps the [`quota`](Self::quota) per key: `key` takes the key from the request
    /// (user id, API key, client IP); `None` is handled as
    /// [`when_unkeyed`](Self::when_unkeyed) says. The tier is named `"per_key"`.
    pub fn keyed<K, F>(mut self, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    {
        self.key = Some(Box::new(move |quota| Tier::keyed(quota, key)));
        self
    }

    /// Adds a tier, asked after the config's [`quota`](RateLimitConfig::quota) and
    /// [`tiers`](RateLimitConfig::tiers), in the order added.
    pub fn tier(mut self, tier: Tier<Req>) -> Self {
        self.tiers.push(tier);
        self
    }

    /// The clock every tier reads (default [`Clock::tokio`], which a paused test clock
    /// controls; [`Clock::quanta`] with the `quanta` feature is the fast one).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Weighs each request (default 1): a request of weight `n` takes `n` tokens, places or
    /// window slots. Weight 0 is always admitted; a weight above a tier's capacity is
    /// refused with [`CostExceedsCapacity`](crate::error::CostExceedsCapacity).
    pub fn weight<F>(mut self, weigher: F) -> Self
    where
        F: Fn(&Req) -> u32 + Send + Sync + 'static,
    {
        self.weigher = Some(Box::new(weigher));
        self
    }

    /// Calls `listener` with every event.
    pub fn on_event<OnEvent>(mut self, listener: OnEvent) -> Self
    where
        OnEvent: Fn(&RateLimitEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when [`RateLimitConfig::validate`] fails, no quota or tier is set,
    /// the builder is keyed without a quota, or a tier's quota, key bound or unkeyed policy
    /// is invalid.
    pub fn build(self) -> Result<RateLimitLayer<Req>, ConfigError> {
        let config = self.config;
        config.validate()?;
        let name = config.shared_name();
        ensure(
            config.quota.is_some() || !config.tiers.is_empty() || !self.tiers.is_empty(),
            "quota",
            "set a quota or add a tier",
        )?;
        let own = match (config.quota, self.key) {
            (Some(quota), Some(key)) => Some(key(quota)),
            (Some(quota), None) => Some(Tier::new(quota)),
            (None, Some(_)) => return Err(ConfigError::new("quota", "`keyed` keys the quota: set one")),
            (None, None) => None,
        };
        let defaults = Defaults {
            algorithm: config.algorithm,
            max_keys: config.max_keys,
            when_unkeyed: config.when_unkeyed,
            clock: &self.clock,
        };
        let tiers =
            own.into_iter().chain(config.tiers.into_iter().map(TierConfig::into_tier)).chain(self.tiers);
        let mut runtimes = Vec::new();
        let mut views = Vec::new();
        for tier in tiers {
            // The config's tiers were validated above; a tier from code names its own field.
            let (rt, view) = tier.build(&defaults)?;
            runtimes.push(rt);
            views.push(view);
        }
        Ok(RateLimitLayer::assemble(&name, config.when_full, self.listeners, runtimes, views, self.weigher))
    }
}
