//! [`EventBus`]: one layer's events to its listeners and to `tracing`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tracing::Level;

use super::fields::Fields;
use super::Event;
use crate::sync::{read, write};

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
    /// Copied on write: `publish` clones the `Arc` and calls the listeners with no lock
    /// held, so a listener may register another one (or publish) without deadlocking.
    listeners: RwLock<Arc<[Listener<E>]>>,
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
            listeners: RwLock::new(Arc::from(Vec::new())),
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
        *write(&bus.listeners) = Arc::from(listeners);
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
        let listener: Listener<E> = Arc::new(listener);
        let mut guard = write(&self.listeners);
        let mut listeners = guard.to_vec();
        listeners.push(listener);
        *guard = Arc::from(listeners);
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
            // No lock is held while user code runs (see `listeners`).
            let listeners = Arc::clone(&read(&self.listeners));
            for listener in listeners.iter() {
                // A listener is user code: one that panics must not take the layer that
                // publishes (or the listeners after it) down with it.
                let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(&event)));
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
        // The fields are gathered only when the level is enabled: no work for a disabled one.
        // 32 fields, the most one `tracing` callsite can hold: a new typed field replaces one.
        macro_rules! emit {
            ($lvl:expr) => {
                if tracing::enabled!(target: "palisade", $lvl) {
                    let f = Fields::of(event);
                    tracing::event!(
                        target: "palisade",
                        $lvl,
                        pattern = self.pattern,
                        name = %self.name,
                        event = event.kind(),
                        details = ?event,
                        from = f.from.as_deref(),
                        to = f.to.as_deref(),
                        reason = f.reason.as_deref(),
                        key = f.key.as_deref(),
                        outcome = f.outcome.as_deref(),
                        error = f.error.as_deref(),
                        stage = f.stage.as_deref(),
                        tier = f.tier.as_deref(),
                        partition = f.partition.as_deref(),
                        provider = f.provider.as_deref(),
                        failure_rate = f.failure_rate,
                        slow_call_rate = f.slow_call_rate,
                        retry_after_ms = f.retry_after_ms,
                        wait_ms = f.wait_ms,
                        delay_ms = f.delay_ms,
                        elapsed_ms = f.elapsed_ms,
                        attempt = f.attempt,
                        failures = f.failures,
                        successes = f.successes,
                        limit = f.limit,
                        in_flight = f.in_flight,
                        count = f.count,
                        pid = f.pid,
                        member = f.member,
                        from_limit = f.from_limit,
                        to_limit = f.to_limit,
                        slow = f.slow,
                        extra = f.extra.as_deref(),
                    )
                }
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

    #[test]
    fn a_listener_may_register_another_listener_and_publish() {
        let bus = Arc::new(EventBus::new("test", "bus"));
        let heard = Arc::new(AtomicUsize::new(0));
        let (b, h) = (Arc::downgrade(&bus), heard.clone());
        bus.subscribe(move |_: &Ping| {
            let h = h.clone();
            if let Some(bus) = b.upgrade() {
                // Would deadlock if listeners ran under the bus's lock.
                bus.subscribe(move |_: &Ping| {
                    h.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        bus.publish(Ping); // registers one more listener; it hears from the next event on
        assert_eq!(heard.load(Ordering::SeqCst), 0);
        bus.publish(Ping); // the new listener hears it (and a second one is registered)
        assert_eq!(heard.load(Ordering::SeqCst), 1);
    }
}
