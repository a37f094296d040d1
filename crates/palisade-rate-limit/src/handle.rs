//! [`RateLimitHandle`]: counters, per-key status and events of a layer.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use palisade_core::config::ConfigError;
use palisade_core::when_full::WhenFull;
use tokio::time::Instant;

use crate::algorithm::Status;
use crate::event::RateLimitEvent;
use crate::quota::Quota;
use crate::shared::Core;
use crate::tier::{TierView, ViewKind};

/// Reads a [`RateLimitLayer`](crate::RateLimitLayer)'s state; from
/// [`RateLimitLayer::handle`](crate::RateLimitLayer::handle). Cheap to clone.
#[derive(Clone)]
pub struct RateLimitHandle {
    core: Arc<Core>,
}

impl fmt::Debug for RateLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitHandle").field("core", &self.core).finish()
    }
}

/// Counters of a rate limit layer since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// Requests admitted and passed on.
    pub admitted: u64,
    /// Requests refused.
    pub rejected: u64,
    /// Requests that had to wait (wait mode, leaky bucket).
    pub waited: u64,
    /// Keys tracked now, over all keyed tiers.
    pub keys: u64,
    /// Keys forgotten (each back to a fresh key's state) to make room or by
    /// [`sweep`](RateLimitHandle::sweep), over all keyed tiers.
    pub keys_evicted: u64,
    /// Requests for new keys refused because every held key still constrained someone
    /// ([`KeySetFull`](palisade_core::rejection::KeySetFull)), over all keyed tiers.
    pub keys_refused: u64,
}

impl RateLimitHandle {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// What a request that cannot be admitted now does
    /// ([`RateLimitConfig::when_full`](crate::RateLimitConfig::when_full)).
    pub fn when_full(&self) -> WhenFull {
        self.core.when_full()
    }

    /// Changes what a request that cannot be admitted now does, for every request from now
    /// on (as Resilience4j's `changeTimeoutDuration`): requests already waiting keep the
    /// deadline they got, new ones wait at most the new `max_wait`, or are refused at once
    /// with [`WhenFull::Refuse`]. A wait of zero is `Refuse`; `Duration::MAX` waits without
    /// a bound.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_core::when_full::WhenFull;
    /// use palisade_rate_limit::{Quota, RateLimitLayer};
    ///
    /// let layer: RateLimitLayer<()> = RateLimitLayer::builder().quota(Quota::per_second(5)).build().unwrap();
    /// let handle = layer.handle();
    /// handle.set_when_full(WhenFull::wait(Duration::from_millis(300)));
    /// assert_eq!(handle.when_full(), WhenFull::wait(Duration::from_millis(300)));
    /// ```
    pub fn set_when_full(&self, when_full: WhenFull) {
        self.core.set_when_full(when_full);
    }

    /// The counters now.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let mut keys = 0;
        let mut keys_refused = 0;
        for tier in &*self.core.tiers {
            if let ViewKind::Keyed(k) = &tier.kind {
                keys += k.len() as u64;
                keys_refused += k.overflows();
            }
        }
        RateLimitSnapshot {
            admitted: self.core.admitted.get(),
            rejected: self.core.rejected.get(),
            waited: self.core.waited.get(),
            keys,
            keys_evicted: self.core.evicted.get(),
            keys_refused,
        }
    }

    /// Forgets, in every keyed tier, each key whose limit is back to a fresh key's state
    /// (the layer does this by itself when a tier is full; call it to trim memory sooner).
    /// Returns how many keys went.
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        for tier in &*self.core.tiers {
            if let ViewKind::Keyed(k) = &tier.kind {
                removed += k.sweep();
            }
        }
        self.core.evicted.add(removed as u64);
        removed
    }

    /// The tiers, in the order they are asked.
    pub fn tiers(&self) -> impl Iterator<Item = TierHandle<'_>> {
        self.core.tiers.iter().map(|view| TierHandle { view })
    }

    /// The first tier named `name`.
    pub fn tier(&self, name: &str) -> Option<TierHandle<'_>> {
        self.tiers().find(|t| t.name() == name)
    }

    /// Status of `key` in the first keyed tier whose keys are of type `K` and which tracks
    /// it; for a global tier use [`tier`](Self::tier)`(..).status()`.
    pub fn status<K: 'static>(&self, key: &K) -> Option<Status> {
        self.tiers().find_map(|t| t.status_of(key))
    }

    /// Changes the quota of the tier named `tier` at once (for a keyed tier, of every key,
    /// held or new), atomically per limit: see
    /// [`RateLimiter::set_quota`](crate::RateLimiter::set_quota) for what happens to
    /// requests already admitted or waiting.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no tier has that name, the quota is invalid, or the tier's
    /// store cannot change quotas; nothing changes then.
    pub fn set_quota(&self, tier: &str, quota: Quota) -> Result<(), ConfigError> {
        let view = self
            .core
            .tiers
            .iter()
            .find(|t| &*t.name == tier)
            .ok_or_else(|| ConfigError::new("tier", "no tier has this name"))?;
        match &view.kind {
            ViewKind::Direct(l) => l.set_quota(quota),
            ViewKind::Keyed(k) => k.set_quota(quota),
        }
    }

    /// Calls `listener` with every event from now on.
    pub fn on_event<OnEvent>(&self, listener: OnEvent)
    where
        OnEvent: Fn(&RateLimitEvent) + Send + Sync + 'static,
    {
        self.core.events.subscribe(listener);
    }
}

/// One tier seen from a [`RateLimitHandle`].
pub struct TierHandle<'a> {
    view: &'a TierView,
}

impl fmt::Debug for TierHandle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierHandle").field("name", &self.name()).field("keyed", &self.is_keyed()).finish()
    }
}

impl TierHandle<'_> {
    /// The tier's name.
    pub fn name(&self) -> &str {
        &self.view.name
    }

    /// `true` for a per-key tier.
    pub fn is_keyed(&self) -> bool {
        matches!(self.view.kind, ViewKind::Keyed(_))
    }

    /// A global tier's status (`None` for keyed tiers).
    pub fn status(&self) -> Option<Status> {
        match &self.view.kind {
            ViewKind::Direct(l) => Some(l.status()),
            ViewKind::Keyed(_) => None,
        }
    }

    /// A keyed tier's status for `key` (`None` if the key is untracked or of another type).
    pub fn status_of<K: 'static>(&self, key: &K) -> Option<Status> {
        match &self.view.kind {
            ViewKind::Keyed(k) => k.status(key as &dyn Any, Instant::now()),
            ViewKind::Direct(_) => None,
        }
    }

    /// Keys tracked now (0 for a global tier).
    pub fn keys(&self) -> usize {
        match &self.view.kind {
            ViewKind::Keyed(k) => k.len(),
            ViewKind::Direct(_) => 0,
        }
    }

    /// Keys evicted so far (0 for a global tier).
    pub fn evictions(&self) -> u64 {
        match &self.view.kind {
            ViewKind::Keyed(k) => k.evictions(),
            ViewKind::Direct(_) => 0,
        }
    }
}
