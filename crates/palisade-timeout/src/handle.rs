//! The handle: the counter and the events shared by a layer and its services.

use std::fmt;
use std::sync::Arc;

use palisade_core::__private::Counter;
use palisade_core::event::EventBus;

use crate::event::TimeoutEvent;

/// What a layer and every service and clone it built share.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) bus: EventBus<TimeoutEvent>,
    pub(crate) timed_out: Counter,
}

impl Shared {
    pub(crate) fn new(name: Arc<str>, bus: EventBus<TimeoutEvent>) -> Self {
        Self { timed_out: Counter::new("palisade_timeout_timed_out_total", &name), name, bus }
    }
}

/// Reads the counter of a [`TimeoutLayer`](crate::TimeoutLayer) and registers listeners for
/// its events.
///
/// # Clone
///
/// Cheap: clones share the layer's state.
#[derive(Clone)]
pub struct TimeoutHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for TimeoutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutHandle")
            .field("name", &self.shared.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl TimeoutHandle {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The counters right now.
    pub fn snapshot(&self) -> TimeoutSnapshot {
        TimeoutSnapshot { timed_out: self.shared.timed_out.get() }
    }

    /// Registers a listener for every [`TimeoutEvent`] published from now on. A listener
    /// that panics is caught and logged.
    pub fn on_event<OnEvent>(&self, listener: OnEvent)
    where
        OnEvent: Fn(&TimeoutEvent) + Send + Sync + 'static,
    {
        self.shared.bus.subscribe(listener);
    }
}

/// The counters of a timeout layer at one moment (see [`TimeoutHandle::snapshot`]).
///
/// Exported with the `metrics` feature as `palisade_timeout_timed_out_total`, label `name`.
/// Calls that finish in time are not counted: the pass path touches no shared counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutSnapshot {
    /// Calls that ran past their timeout.
    pub timed_out: u64,
}
