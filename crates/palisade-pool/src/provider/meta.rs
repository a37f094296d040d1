//! What a provider is and how providers are ranked: [`ProviderMeta`], [`Meta`],
//! [`Provider`], [`ProviderSnapshot`], [`Ranking`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What the built-in rankings read from a provider's metadata.
pub trait ProviderMeta: Send + Sync + 'static {
    /// The provider's cost per call, in any unit (default 0).
    fn cost(&self) -> f64 {
        0.0
    }
}

/// Ready-made metadata: a cost and a set of capabilities.
///
/// ```
/// use palisade_pool::provider::Meta;
/// let m = Meta::new(2.5).capability("vision");
/// assert!(m.has("vision") && !m.has("audio"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    cost: f64,
    capabilities: Vec<Arc<str>>,
}

impl Meta {
    /// Metadata with this cost and no capabilities.
    pub fn new(cost: f64) -> Self {
        Self { cost, capabilities: Vec::new() }
    }

    /// Adds a capability.
    pub fn capability(mut self, name: impl Into<Arc<str>>) -> Self {
        self.capabilities.push(name.into());
        self
    }

    /// Whether the provider has the capability.
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| &**c == name)
    }
}

impl ProviderMeta for Meta {
    fn cost(&self) -> f64 {
        self.cost
    }
}

/// One provider as discovery yields it: a service and its metadata.
#[derive(Clone, Debug)]
pub struct Provider<S, Metadata> {
    pub(super) service: S,
    pub(super) meta: Metadata,
}

impl<S, Metadata> Provider<S, Metadata> {
    /// A provider.
    pub fn new(service: S, meta: Metadata) -> Self {
        Self { service, meta }
    }
}

/// What `Select` observed of a provider.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProviderSnapshot {
    /// Calls in flight.
    pub in_flight: usize,
    /// Peak-EWMA latency (the builder's `default_rtt` before the first call).
    pub latency: Duration,
    /// Calls made.
    pub calls: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Failures since the last success.
    pub failures_in_a_row: u32,
    /// Not marked down.
    pub healthy: bool,
}

impl ProviderSnapshot {
    /// `failures / calls` (0 before the first call).
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }
}

/// How providers are ordered: each gets a score, lower first (ties keep discovery order).
pub enum Ranking<Metadata> {
    /// Lowest failure rate, then lowest latency.
    Best,
    /// Lowest [`cost`](ProviderMeta::cost), then lowest latency.
    Cheapest,
    /// Lowest peak-EWMA latency.
    Fastest,
    /// Lowest `latency × (in_flight + 1) × (1 + cost)`: the pool's peak-EWMA load, weighed
    /// by cost.
    Balanced,
    /// Your score.
    Custom(Arc<dyn Fn(&Metadata, &ProviderSnapshot) -> f64 + Send + Sync>),
}

impl<Metadata> Clone for Ranking<Metadata> {
    fn clone(&self) -> Self {
        match self {
            Self::Best => Self::Best,
            Self::Cheapest => Self::Cheapest,
            Self::Fastest => Self::Fastest,
            Self::Balanced => Self::Balanced,
            Self::Custom(f) => Self::Custom(f.clone()),
        }
    }
}

impl<Metadata> fmt::Debug for Ranking<Metadata> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Best => "Best",
            Self::Cheapest => "Cheapest",
            Self::Fastest => "Fastest",
            Self::Balanced => "Balanced",
            Self::Custom(_) => "Custom",
        })
    }
}

impl<Metadata: ProviderMeta> Ranking<Metadata> {
    /// A ranking by `score` (lower first).
    pub fn custom<F>(score: F) -> Self
    where
        F: Fn(&Metadata, &ProviderSnapshot) -> f64 + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(score))
    }

    pub(super) fn score(&self, meta: &Metadata, s: &ProviderSnapshot) -> f64 {
        let latency = s.latency.as_secs_f64();
        let score = match self {
            Self::Best => s.failure_rate() * 1e9 + latency,
            Self::Cheapest => meta.cost() * 1e9 + latency,
            Self::Fastest => latency,
            Self::Balanced => latency * (s.in_flight as f64 + 1.0) * (1.0 + meta.cost().max(0.0)),
            Self::Custom(f) => f(meta, s),
        };
        // A NaN score (a custom ranking's, or a NaN cost) sorts last.
        if score.is_nan() {
            f64::INFINITY
        } else {
            score
        }
    }
}
