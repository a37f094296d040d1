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
use std::sync::Arc;
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
/// `from`, `to`, `reason`, `key`, `outcome`, `error`, `stage`, `tier`, `partition`,
/// `provider`; a float for `failure_rate`, `slow_call_rate`; an unsigned integer for
/// `retry_after_ms`, `wait_ms`, `delay_ms`, `elapsed_ms`, `attempt`, `failures`,
/// `successes`, `limit`, `in_flight`, `count`, `pid`, `member`, `from_limit`, `to_limit`;
/// a flag for `slow`. A value of another type (or a name not listed) goes to the `extra`
/// field.
///
/// What they mean, across patterns: `from`/`to` a state change; `reason` why (a rejection's,
/// a transition's, a give-up's); `outcome` how a call or process ended; `attempt` the attempt
/// number the event concerns (the last one for a give-up); `retry_after_ms` when to try
/// again (the server's hint for a retry); `delay_ms` a wait palisade chose; `elapsed_ms` how
/// long something ran; `count` how many things the event concerns (members, resources,
/// keys, providers).
pub const KNOWN_FIELDS: &[&str] = &[
    "from",
    "to",
    "reason",
    "key",
    "outcome",
    "error",
    "stage",
    "tier",
    "partition",
    "provider",
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
    "count",
    "pid",
    "member",
    "from_limit",
    "to_limit",
    "slow",
];

mod bus;
mod fields;

pub use bus::{EventBus, Listener};
