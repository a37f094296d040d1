//! The handle: counters and event listeners shared by a layer and its services.

use std::fmt;
use std::sync::Arc;

use palisade_core::__private::Counter;
use palisade_core::event::EventBus;

use crate::event::FallbackEvent;

/// Counters and events of one fallback layer, shared by every service it built.
pub(crate) struct Stats {
    pub(crate) name: Arc<str>,
    pub(crate) bus: EventBus<FallbackEvent>,
    pub(crate) calls: Counter,
    pub(crate) triggered: Counter,
    pub(crate) used: Counter,
    pub(crate) failed: Counter,
    pub(crate) provider_failures: Counter,
}

impl Stats {
    pub(crate) fn new(name: Arc<str>, bus: EventBus<FallbackEvent>) -> Self {
        Self {
            calls: Counter::new("palisade_fallback_calls_total", &name),
            triggered: Counter::new("palisade_fallback_triggered_total", &name),
            used: Counter::new("palisade_fallback_used_total", &name),
            failed: Counter::new("palisade_fallback_failed_total", &name),
            provider_failures: Counter::new("palisade_fallback_provider_failures_total", &name),
            name,
            bus,
        }
    }
}

/// Reads the counters of a [`FallbackLayer`](crate::FallbackLayer) and registers listeners
/// for its events.
///
/// # Clone
///
/// Cheap: clones share the layer's state.
#[derive(Clone)]
pub struct FallbackHandle {
    pub(crate) stats: Arc<Stats>,
}

impl fmt::Debug for FallbackHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackHandle")
            .field("name", &self.stats.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl FallbackHandle {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// The counters right now.
    pub fn snapshot(&self) -> FallbackSnapshot {
        let s = &self.stats;
        FallbackSnapshot {
            calls: s.calls.get(),
            triggered: s.triggered.get(),
            fallbacks_used: s.used.get(),
            fallbacks_failed: s.failed.get(),
            provider_failures: s.provider_failures.get(),
        }
    }

    /// Registers a listener for every [`FallbackEvent`] published from now on. A listener
    /// that panics is caught and logged.
    pub fn on_event<OnEvent>(&self, listener: OnEvent)
    where
        OnEvent: Fn(&FallbackEvent) + Send + Sync + 'static,
    {
        self.stats.bus.subscribe(listener);
    }
}

/// The counters of a fallback layer at one moment (see [`FallbackHandle::snapshot`]).
///
/// Exported with the `metrics` feature as `palisade_fallback_<field>_total` (`calls`,
/// `triggered`, `used`, `failed`, `provider_failures`), label `name`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackSnapshot {
    /// Calls made through the layer. Each service value counts its calls and adds them here
    /// every 64 calls and when it is dropped (so that a call touches no shared counter):
    /// a long-lived service's last calls may not show yet.
    pub calls: u64,
    /// Calls whose inner answer started a fallback.
    pub triggered: u64,
    /// Fallbacks that answered successfully.
    pub fallbacks_used: u64,
    /// Fallbacks where every provider failed.
    pub fallbacks_failed: u64,
    /// Failed provider attempts (several per call with a chain).
    pub provider_failures: u64,
}
