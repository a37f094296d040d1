//! What a registry shows of its layers: [`PatternKind`], [`PatternHandle`], [`NamedHandle`],
//! [`PatternSnapshot`], [`RegistrySnapshot`].

use std::collections::BTreeMap;

use crate::bulkhead::adaptive::{AdaptiveLimitHandle, AdaptiveLimitSnapshot};
use crate::bulkhead::{BulkheadHandle, BulkheadSnapshot};
use crate::chaos::{ChaosHandle, ChaosSnapshot};
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerSnapshot};
use crate::rate_limit::{RateLimitHandle, RateLimitSnapshot};
use crate::retry::{RetryHandle, RetrySnapshot};
use crate::timeout::{TimeoutHandle, TimeoutSnapshot};

/// Which section of a policy a layer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PatternKind {
    /// `rate_limit`
    RateLimit,
    /// `bulkhead`
    Bulkhead,
    /// `adaptive_limit`
    AdaptiveLimit,
    /// `timeout` (total)
    Timeout,
    /// `retry`
    Retry,
    /// `circuit_breaker`
    CircuitBreaker,
    /// `attempt_timeout` (per attempt)
    AttemptTimeout,
    /// `chaos`
    Chaos,
}

impl PatternKind {
    /// The section's key in the file (`"circuit_breaker"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RateLimit => "rate_limit",
            Self::Bulkhead => "bulkhead",
            Self::AdaptiveLimit => "adaptive_limit",
            Self::Timeout => "timeout",
            Self::Retry => "retry",
            Self::CircuitBreaker => "circuit_breaker",
            Self::AttemptTimeout => "attempt_timeout",
            Self::Chaos => "chaos",
        }
    }
}

impl std::fmt::Display for PatternKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The run-time handle of one layer a registry built (each pattern's `XHandle`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PatternHandle {
    /// A rate limit's handle.
    RateLimit(RateLimitHandle),
    /// A bulkhead's handle.
    Bulkhead(BulkheadHandle),
    /// An adaptive limit's handle.
    AdaptiveLimit(AdaptiveLimitHandle),
    /// The total timeout's handle.
    Timeout(TimeoutHandle),
    /// A retry's handle.
    Retry(RetryHandle),
    /// A circuit breaker's handle.
    CircuitBreaker(CircuitBreakerHandle),
    /// The per-attempt timeout's handle.
    AttemptTimeout(TimeoutHandle),
    /// A chaos layer's handle.
    Chaos(ChaosHandle),
}

impl PatternHandle {
    /// The section it comes from.
    pub fn kind(&self) -> PatternKind {
        match self {
            Self::RateLimit(_) => PatternKind::RateLimit,
            Self::Bulkhead(_) => PatternKind::Bulkhead,
            Self::AdaptiveLimit(_) => PatternKind::AdaptiveLimit,
            Self::Timeout(_) => PatternKind::Timeout,
            Self::Retry(_) => PatternKind::Retry,
            Self::CircuitBreaker(_) => PatternKind::CircuitBreaker,
            Self::AttemptTimeout(_) => PatternKind::AttemptTimeout,
            Self::Chaos(_) => PatternKind::Chaos,
        }
    }

    /// The layer's own name (in events and metric labels).
    pub fn name(&self) -> &str {
        match self {
            Self::RateLimit(h) => h.name(),
            Self::Bulkhead(h) => h.name(),
            Self::AdaptiveLimit(h) => h.name(),
            Self::Timeout(h) | Self::AttemptTimeout(h) => h.name(),
            Self::Retry(h) => h.name(),
            Self::CircuitBreaker(h) => h.name(),
            Self::Chaos(h) => h.name(),
        }
    }

    /// The layer's snapshot now.
    pub fn snapshot(&self) -> PatternSnapshot {
        match self {
            Self::RateLimit(h) => PatternSnapshot::RateLimit(h.snapshot()),
            Self::Bulkhead(h) => PatternSnapshot::Bulkhead(h.snapshot()),
            Self::AdaptiveLimit(h) => PatternSnapshot::AdaptiveLimit(h.snapshot()),
            Self::Timeout(h) => PatternSnapshot::Timeout(h.snapshot()),
            Self::Retry(h) => PatternSnapshot::Retry(h.snapshot()),
            Self::CircuitBreaker(h) => PatternSnapshot::CircuitBreaker(h.snapshot()),
            Self::AttemptTimeout(h) => PatternSnapshot::AttemptTimeout(h.snapshot()),
            Self::Chaos(h) => PatternSnapshot::Chaos(h.snapshot()),
        }
    }
}

/// A handle with the policy it belongs to, from [`Registry::handles`](super::Registry::handles).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NamedHandle {
    /// The policy's name.
    pub policy: String,
    /// The handle.
    pub handle: PatternHandle,
}

impl NamedHandle {
    /// The section it comes from.
    pub fn kind(&self) -> PatternKind {
        self.handle.kind()
    }
}

/// One layer's snapshot (each pattern's `XSnapshot`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PatternSnapshot {
    /// A rate limit's counters.
    RateLimit(RateLimitSnapshot),
    /// A bulkhead's permits and counters.
    Bulkhead(BulkheadSnapshot),
    /// An adaptive limit's limit and counters.
    AdaptiveLimit(AdaptiveLimitSnapshot),
    /// The total timeout's counters.
    Timeout(TimeoutSnapshot),
    /// A retry's counters.
    Retry(RetrySnapshot),
    /// A circuit breaker's state and window.
    CircuitBreaker(CircuitBreakerSnapshot),
    /// The per-attempt timeout's counters.
    AttemptTimeout(TimeoutSnapshot),
    /// A chaos layer's counters.
    Chaos(ChaosSnapshot),
}

impl PatternSnapshot {
    /// The section it comes from.
    pub fn kind(&self) -> PatternKind {
        match self {
            Self::RateLimit(_) => PatternKind::RateLimit,
            Self::Bulkhead(_) => PatternKind::Bulkhead,
            Self::AdaptiveLimit(_) => PatternKind::AdaptiveLimit,
            Self::Timeout(_) => PatternKind::Timeout,
            Self::Retry(_) => PatternKind::Retry,
            Self::CircuitBreaker(_) => PatternKind::CircuitBreaker,
            Self::AttemptTimeout(_) => PatternKind::AttemptTimeout,
            Self::Chaos(_) => PatternKind::Chaos,
        }
    }
}

/// Every layer's snapshot, per policy, from [`Registry::snapshot`](super::Registry::snapshot).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// Per policy, its layers' snapshots, outermost first.
    pub policies: BTreeMap<String, Vec<PatternSnapshot>>,
}

impl RegistrySnapshot {
    /// The snapshot of `policy`'s `kind` section, if it has one.
    pub fn get(&self, policy: &str, kind: PatternKind) -> Option<&PatternSnapshot> {
        self.policies.get(policy)?.iter().find(|s| s.kind() == kind)
    }

    /// Every snapshot with its policy.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PatternSnapshot)> {
        self.policies.iter().flat_map(|(name, snaps)| snaps.iter().map(move |s| (name.as_str(), s)))
    }
}
