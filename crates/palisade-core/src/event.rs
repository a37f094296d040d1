//! Events: every layer publishes typed events to listeners and to `tracing`.
//!
//! Each layer defines its own event enum and implements [`Event`] for it. An [`EventBus`]
//! (one per layer value, shared by its clones) sends every event to:
//!
//! - the listeners registered with [`EventBus::subscribe`] (from the layer's builder or its
//!   handle), called synchronously on the task that published;
//! - `tracing`, as an event with target `palisade` and the fields `pattern`, `name` (the
//!   layer's name), `event` (the kind) and `details` (the event's `Debug`).
//!
//! With no listener registered, [`EventBus::publish`] checks one atomic flag and the
//! `tracing` callsite's interest: no allocation, no lock.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use palisade_core::event::{Event, EventBus};
//!
//! #[derive(Debug)]
//! enum DoorEvent { Opened, Closed }
//!
//! impl Event for DoorEvent {
//!     fn kind(&self) -> &'static str {
//!         match self { DoorEvent::Opened => "opened", DoorEvent::Closed => "closed" }
//!     }
//! }
//!
//! let bus = EventBus::new("door", "front");
//! let opened = Arc::new(AtomicUsize::new(0));
//! let seen = opened.clone();
//! bus.subscribe(move |e: &DoorEvent| {
//!     if matches!(e, DoorEvent::Opened) { seen.fetch_add(1, Ordering::Relaxed); }
//! });
//! bus.publish(DoorEvent::Opened);
//! bus.publish(DoorEvent::Closed);
//! assert_eq!(opened.load(Ordering::Relaxed), 1);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tracing::Level;

/// A typed event published by a palisade layer.
pub trait Event: fmt::Debug + Send + Sync + 'static {
    /// A short stable name for this event (`"state_transition"`, `"rejected"`, …).
    fn kind(&self) -> &'static str;

    /// The `tracing` level the event is logged at. Per-call events should stay at `TRACE`
    /// or `DEBUG`; state changes may be `INFO` or `WARN`.
    fn level(&self) -> Level {
        Level::DEBUG
    }
}

/// A listener: a closure called with every event.
pub type Listener<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// Publishes one layer's events to its listeners and to `tracing`.
///
/// Share it behind an `Arc` in the layer's state so that every clone publishes to the same
/// listeners.
pub struct EventBus<E> {
    pattern: &'static str,
    name: Arc<str>,
    has_listeners: AtomicBool,
    listeners: RwLock<Vec<Listener<E>>>,
}

impl<E> fmt::Debug for EventBus<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("pattern", &self.pattern)
            .field("name", &self.name)
            .field("has_listeners", &self.has_listeners.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<E: Event> EventBus<E> {
    /// A bus for the layer `name` of the pattern `pattern` (e.g. `"circuit_breaker"`).
    pub fn new(pattern: &'static str, name: impl Into<Arc<str>>) -> Self {
        Self {
            pattern,
            name: name.into(),
            has_listeners: AtomicBool::new(false),
            listeners: RwLock::new(Vec::new()),
        }
    }

    /// A bus with listeners registered up front (from a builder).
    pub fn with_listeners(
        pattern: &'static str,
        name: impl Into<Arc<str>>,
        listeners: Vec<Listener<E>>,
    ) -> Self {
        let bus = Self::new(pattern, name);
        bus.has_listeners.store(!listeners.is_empty(), Ordering::Release);
        if let Ok(mut l) = bus.listeners.write() {
            *l = listeners;
        }
        bus
    }

    /// The pattern this bus belongs to.
    pub fn pattern(&self) -> &'static str {
        self.pattern
    }

    /// The layer's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Registers a listener; it receives every event published from now on.
    pub fn subscribe<F>(&self, listener: F)
    where
        F: Fn(&E) + Send + Sync + 'static,
    {
        let mut guard = match self.listeners.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.push(Arc::new(listener));
        self.has_listeners.store(true, Ordering::Release);
    }

    /// Whether anything would see an event published now (a listener, or `tracing` at the
    /// event's level). Use it to skip building costly events.
    pub fn is_observed(&self) -> bool {
        self.has_listeners.load(Ordering::Acquire) || tracing::enabled!(target: "palisade", Level::ERROR)
    }

    /// Publishes `event` to the listeners and to `tracing`. A listener that panics is logged
    /// (`tracing`, level ERROR) and skipped; the other listeners still receive the event.
    #[allow(clippy::needless_pass_by_value)] // events are built where they are published
    pub fn publish(&self, event: E) {
        self.trace(&event);
        if self.has_listeners.load(Ordering::Acquire) {
            let guard = match self.listeners.read() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            for listener in guard.iter() {
                // A listener is user code: one that panics must not take the layer that
                // publishes (or the listeners after it) down with it.
                let delivered =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(&event)));
                if delivered.is_err() {
                    tracing::error!(
                        target: "palisade",
                        pattern = self.pattern,
                        name = %self.name,
                        event = event.kind(),
                        "an event listener panicked; the event still reached the other listeners"
                    );
                }
            }
        }
    }

    fn trace(&self, event: &E) {
        macro_rules! emit {
            ($lvl:expr) => {
                tracing::event!(
                    target: "palisade",
                    $lvl,
                    pattern = self.pattern,
                    name = %self.name,
                    event = event.kind(),
                    details = ?event,
                )
            };
        }
        match event.level() {
            Level::ERROR => emit!(Level::ERROR),
            Level::WARN => emit!(Level::WARN),
            Level::INFO => emit!(Level::INFO),
            Level::DEBUG => emit!(Level::DEBUG),
            _ => emit!(Level::TRACE),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::{Event, EventBus};

    #[derive(Debug)]
    struct Ping;

    impl Event for Ping {
        fn kind(&self) -> &'static str {
            "ping"
        }
    }

    #[test]
    fn a_panicking_listener_is_skipped_and_the_others_still_hear() {
        let bus = EventBus::new("test", "bus");
        let heard = Arc::new(AtomicUsize::new(0));
        bus.subscribe(|_: &Ping| panic!("listener bug"));
        let h = heard.clone();
        bus.subscribe(move |_: &Ping| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        bus.publish(Ping);
        bus.publish(Ping);
        assert_eq!(heard.load(Ordering::SeqCst), 2);
    }
}
