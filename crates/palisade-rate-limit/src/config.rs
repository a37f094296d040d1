//! [`RateLimitLayerBuilder`], [`Mode`] and (feature `serde`) [`RateLimitConfig`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::metric::Counter;

use crate::algorithm::Algorithm;
use crate::clock::Clock;
use crate::event::RateLimitEvent;
use crate::layer::RateLimitLayer;
use crate::quota::Quota;
use crate::shared::{Core, Shared, Striped, Weigher};
use crate::tier::Tier;

/// What the layer does with a request it cannot admit now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Refuse it at once with [`RateLimited`](palisade_core::rejection::RateLimited), whose
    /// `retry_after` is the time until the same request would be admitted.
    #[default]
    Reject,
    /// Hold it (backpressure through `poll_ready`, or in the response future for keyed and
    /// weighted limits) until it is admitted, if that is no more than `max_wait` away;
    /// refuse it at once otherwise.
    Wait {
        /// The longest a request waits.
        max_wait: Duration,
    },
}

/// Builds a [`RateLimitLayer`]; from [`RateLimitLayer::builder`].
pub struct RateLimitLayerBuilder<Req> {
    name: Arc<str>,
    algorithm: Algorithm,
    mode: Mode,
    tiers: Vec<Tier<Req>>,
    weigher: Option<Weigher<Req>>,
    listeners: Vec<Listener<RateLimitEvent>>,
    clock: Clock,
}

impl<Req> fmt::Debug for RateLimitLayerBuilder<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("mode", &self.mode)
            .field("tiers", &self.tiers)
            .field("weighted", &self.weigher.is_some())
            .field("listeners", &self.listeners.len())
            .field("clock", &self.clock)
            .finish()
    }
}

impl<Req: 'static> RateLimitLayerBuilder<Req> {
    pub(crate) fn new() -> Self {
        Self {
            name: Arc::from("rate_limit"),
            algorithm: Algorithm::default(),
            mode: Mode::default(),
            tiers: Vec::new(),
            weigher: None,
            listeners: Vec::new(),
            clock: Clock::default(),
        }
    }

    /// The layer's name in rejections, events and metric labels (default `"rate_limit"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The algorithm of every tier that does not choose its own (default token bucket).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The clock every tier reads (default [`Clock::tokio`], which a paused test clock
    /// controls; [`Clock::quanta`] with the `quanta` feature is the fast one).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a global tier with `quota` (shorthand for `.tier(Tier::new(quota))`).
    pub fn quota(self, quota: Quota) -> Self {
        self.tier(Tier::new(quota))
    }

    /// Adds a per-key tier with `quota` (shorthand for `.tier(Tier::keyed(quota, key))`).
    pub fn keyed<K, F>(self, quota: Quota, key: F) -> Self
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> K + Send + Sync + 'static,
    {
        self.tier(Tier::keyed(quota, key))
    }

    /// Adds a tier; tiers are asked in the order added.
    pub fn tier(mut self, tier: Tier<Req>) -> Self {
        self.tiers.push(tier);
        self
    }

    /// Sets the mode (default [`Mode::Reject`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Refuse at once what cannot be admitted now (the default).
    pub fn reject(self) -> Self {
        self.mode(Mode::Reject)
    }

    /// Wait up to `max_wait` for admission, then refuse.
    pub fn wait(self, max_wait: Duration) -> Self {
        self.mode(Mode::Wait { max_wait })
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
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&RateLimitEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no tier is set, the name is empty, or a tier's quota or key
    /// bound is invalid.
    pub fn build(self) -> Result<RateLimitLayer<Req>, ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        ensure(!self.tiers.is_empty(), "quota", "set a quota or add a tier")?;
        let mut runtimes = Vec::with_capacity(self.tiers.len());
        let mut views = Vec::with_capacity(self.tiers.len());
        for tier in self.tiers {
            let (rt, view) = tier.build(self.algorithm, &self.clock)?;
            runtimes.push(rt);
            views.push(view);
        }
        let name = &*self.name;
        let core = Arc::new(Core {
            name: self.name.clone(),
            mode: self.mode,
            tiers: views.into_boxed_slice(),
            events: EventBus::with_listeners("rate_limit", self.name.clone(), self.listeners),
            admitted: Striped::new("palisade_rate_limit_admitted_total", name),
            rejected: Counter::new("palisade_rate_limit_rejected_total", name),
            waited: Counter::new("palisade_rate_limit_waited_total", name),
            evicted: Counter::new("palisade_rate_limit_keys_evicted_total", name),
        });
        Ok(RateLimitLayer::from_shared(Arc::new(Shared::new(
            core,
            runtimes.into_boxed_slice(),
            self.weigher,
        ))))
    }
}

/// A single global limit as configuration (feature `serde`).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_rate_limit::RateLimitConfig;
///
/// let config: RateLimitConfig = serde_json::from_str(
///     r#"{ "name": "api", "limit": 100, "period": "1s", "burst": 20, "max_wait": "250ms" }"#,
/// ).unwrap();
/// let layer = config.build::<String>().unwrap();
/// # let _ = layer;
/// # }
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The layer's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The algorithm (`"token_bucket"`, `{"leaky_bucket": {"queue": 10}}`, …).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Requests per period.
    pub limit: u32,
    /// The period (`"1s"`, `"1m"`).
    #[serde(with = "palisade_core::duration::serde")]
    pub period: Duration,
    /// Token bucket burst (default `limit`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Wait up to this long instead of rejecting at once.
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub max_wait: Option<Duration>,
}

#[cfg(feature = "serde")]
impl RateLimitConfig {
    /// A builder with these settings.
    pub fn into_builder<Req: 'static>(self) -> RateLimitLayerBuilder<Req> {
        let mut quota = Quota::new(self.limit, self.period);
        if let Some(b) = self.burst {
            quota = quota.burst(b);
        }
        let mut builder = RateLimitLayer::builder().algorithm(self.algorithm).quota(quota);
        if let Some(name) = self.name {
            builder = builder.name(name);
        }
        if let Some(max_wait) = self.max_wait {
            builder = builder.wait(max_wait);
        }
        builder
    }

    /// The layer, validated like the builder.
    pub fn build<Req: 'static>(self) -> Result<RateLimitLayer<Req>, ConfigError> {
        self.into_builder().build()
    }
}
