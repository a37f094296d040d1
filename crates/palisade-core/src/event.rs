//! Events: every layer publishes typed events to listeners and to `tracing`.
//!
//! Each layer defines its own event enum and implements [`Event`] for it. An [`EventBus`]
//! (one per layer value, shared by its clones) sends every event to:
//!
//! - the listeners registered with [`EventBus::subscribe`] (from the layer's builder or its
//!   handle), called synchronously on the task that published;
//! - `tracing`, as an event with target `palisade` and the fields `pattern`, `name` (the
//!   layer's name), `event` (the kind), `details` (the event's `Debug`, kept for existing log
//!   queries) and the event's own structured fields from [`Event::fields`]: `from`, `to`,
//!   `reason`, `failure_rate`, `retry_after_ms`, … (the full list is [`KNOWN_FIELDS`]), so a
//!   JSON log can be queried by them. Fields whose names are not in the list are logged
//!   together in one `extra` field (`name=value` pairs).
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

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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

    /// Reports the event's data as named fields, for `tracing` (structured logs). The
    /// default reports none (the `details` field still carries the event's `Debug`).
    ///
    /// Use the names of [`KNOWN_FIELDS`] where they fit: each becomes a typed `tracing` field
    /// of that name (durations as whole milliseconds in `*_ms` fields). Other names are logged
    /// together in the `extra` field.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_core::event::{Event, FieldValue};
    ///
    /// #[derive(Debug)]
    /// struct Rejected { retry_after: Duration }
    ///
    /// impl Event for Rejected {
    ///     fn kind(&self) -> &'static str { "rejected" }
    ///     fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
    ///         record("retry_after_ms", self.retry_after.into());
    ///     }
    /// }
    ///
    /// let mut seen = Vec::new();
    /// Rejected { retry_after: Duration::from_millis(1500) }.fields(&mut |k, v| seen.push((k, v)));
    /// assert_eq!(seen, vec![("retry_after_ms", FieldValue::U64(1500))]);
    /// ```
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        let _ = record;
    }
}

/// The value of one field reported by [`Event::fields`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FieldValue {
    /// Text (a state, a reason, a key).
    Str(Cow<'static, str>),
    /// A count, a limit, a number of milliseconds.
    U64(u64),
    /// A signed number.
    I64(i64),
    /// A rate or a ratio.
    F64(f64),
    /// A flag.
    Bool(bool),
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::U64(n) => write!(f, "{n}"),
            Self::I64(n) => write!(f, "{n}"),
            Self::F64(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl From<&'static str> for FieldValue {
    fn from(s: &'static str) -> Self {
        Self::Str(Cow::Borrowed(s))
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        Self::Str(Cow::Owned(s))
    }
}

impl From<&Arc<str>> for FieldValue {
    fn from(s: &Arc<str>) -> Self {
        Self::Str(Cow::Owned(s.as_ref().to_owned()))
    }
}

impl From<u64> for FieldValue {
    fn from(n: u64) -> Self {
        Self::U64(n)
    }
}

impl From<u32> for FieldValue {
    fn from(n: u32) -> Self {
        Self::U64(n.into())
    }
}

impl From<u16> for FieldValue {
    fn from(n: u16) -> Self {
        Self::U64(n.into())
    }
}

impl From<usize> for FieldValue {
    fn from(n: usize) -> Self {
        Self::U64(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

impl From<i64> for FieldValue {
    fn from(n: i64) -> Self {
        Self::I64(n)
    }
}

impl From<f64> for FieldValue {
    fn from(x: f64) -> Self {
        Self::F64(x)
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

/// A duration becomes whole milliseconds (saturating at `u64::MAX`): report it under a
/// `*_ms` name.
impl From<Duration> for FieldValue {
    fn from(d: Duration) -> Self {
        Self::U64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The field names [`EventBus`] logs as typed `tracing` fields, with their types: text for
/// `from`, `to`, `reason`, `key`, `outcome`, `error`; a float for `failure_rate`,
/// `slow_call_rate`; an unsigned integer for `retry_after_ms`, `wait_ms`, `delay_ms`,
/// `elapsed_ms`, `attempt`, `failures`, `successes`, `limit`, `in_flight`; a flag for
/// `slow`. A value of another type (or a name not listed) goes to the `extra` field.
pub const KNOWN_FIELDS: &[&str] = &[
    "from",
    "to",
    "reason",
    "key",
    "outcome",
    "error",
    "failure_rate",
    "slow_call_rate",
    "retry_after_ms",
    "wait_ms",
    "delay_ms",
    "elapsed_ms",
    "attempt",
    "failures",
    "successes",
    "limit",
    "in_flight",
    "slow",
];

/// One event's fields, sorted into the typed slots of the `tracing` callsite.
#[derive(Default)]
struct Fields {
    from: Option<Cow<'static, str>>,
    to: Option<Cow<'static, str>>,
    reason: Option<Cow<'static, str>>,
    key: Option<Cow<'static, str>>,
    outcome: Option<Cow<'static, str>>,
    error: Option<Cow<'static, str>>,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    retry_after_ms: Option<u64>,
    wait_ms: Option<u64>,
    delay_ms: Option<u64>,
    elapsed_ms: Option<u64>,
    attempt: Option<u64>,
    failures: Option<u64>,
    successes: Option<u64>,
    limit: Option<u64>,
    in_flight: Option<u64>,
    slow: Option<bool>,
    extra: Option<String>,
}

impl Fields {
    fn of(event: &dyn Event) -> Self {
        let mut f = Self::default();
        event.fields(&mut |name, value| f.put(name, value));
        f
    }

    fn put(&mut self, name: &'static str, value: FieldValue) {
        fn text(v: FieldValue) -> Cow<'static, str> {
            match v {
                FieldValue::Str(s) => s,
                other => Cow::Owned(other.to_string()),
            }
        }
        fn uint(v: &FieldValue) -> Option<u64> {
            match *v {
                FieldValue::U64(n) => Some(n),
                FieldValue::I64(n) => u64::try_from(n).ok(),
                _ => None,
            }
        }
        fn float(v: &FieldValue) -> Option<f64> {
            match *v {
                FieldValue::F64(x) => Some(x),
                #[allow(clippy::cast_precision_loss)] // a rate given as a whole number
                FieldValue::U64(n) => Some(n as f64),
                #[allow(clippy::cast_precision_loss)]
                FieldValue::I64(n) => Some(n as f64),
                _ => None,
            }
        }
        let slot_str = match name {
            "from" => Some(&mut self.from),
            "to" => Some(&mut self.to),
            "reason" => Some(&mut self.reason),
            "key" => Some(&mut self.key),
            "outcome" => Some(&mut self.outcome),
            "error" => Some(&mut self.error),
            _ => None,
        };
        if let Some(slot) = slot_str {
            *slot = Some(text(value));
            return;
        }
        let slot_float = match name {
            "failure_rate" => Some(&mut self.failure_rate),
            "slow_call_rate" => Some(&mut self.slow_call_rate),
            _ => None,
        };
        if let Some(slot) = slot_float {
            if let Some(x) = float(&value) {
                *slot = Some(x);
                return;
            }
        }
        let slot_uint = match name {
            "retry_after_ms" => Some(&mut self.retry_after_ms),
            "wait_ms" => Some(&mut self.wait_ms),
            "delay_ms" => Some(&mut self.delay_ms),
            "elapsed_ms" => Some(&mut self.elapsed_ms),
            "attempt" => Some(&mut self.attempt),
            "failures" => Some(&mut self.failures),
            "successes" => Some(&mut self.successes),
            "limit" => Some(&mut self.limit),
            "in_flight" => Some(&mut self.in_flight),
            _ => None,
        };
        if let Some(slot) = slot_uint {
            if let Some(n) = uint(&value) {
                *slot = Some(n);
                return;
            }
        }
        if let ("slow", FieldValue::Bool(b)) = (name, &value) {
            self.slow = Some(*b);
            return;
        }
        let extra = self.extra.get_or_insert_with(String::new);
        if !extra.is_empty() {
            extra.push(' ');
        }
        extra.push_str(name);
        extra.push('=');
        extra.push_str(&value.to_string());
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
}
