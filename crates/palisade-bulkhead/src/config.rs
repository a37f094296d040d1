//! The bulkhead builder and, with feature `serde`, its deserializable config.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::compartment::{check_max_concurrent, Common};
use crate::event::BulkheadEvent;
use crate::keyed::KeyedBulkheadLayer;
use crate::layer::BulkheadLayer;
use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::{EventBus, Listener};

/// Permits a bulkhead has when the builder is not told otherwise.
pub const DEFAULT_MAX_CONCURRENT: usize = 25;

/// Builds a [`BulkheadLayer`] (or, with [`keyed`](Self::keyed), a [`KeyedBulkheadLayer`]).
///
/// | setting | default |
/// |---|---|
/// | [`name`](Self::name) | `"bulkhead"` |
/// | [`max_concurrent`](Self::max_concurrent) | 25 |
/// | [`max_queue`](Self::max_queue) | unbounded (bounded by callers, like `ConcurrencyLimit`) |
/// | [`max_wait`](Self::max_wait) | none (wait until a permit frees) |
#[must_use]
pub struct BulkheadBuilder {
    name: Arc<str>,
    max_concurrent: usize,
    max_queue: Option<usize>,
    max_wait: Option<Duration>,
    shed_when_inner_not_ready: bool,
    listeners: Vec<Listener<BulkheadEvent>>,
}

impl fmt::Debug for BulkheadBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("shed_when_inner_not_ready", &self.shed_when_inner_not_ready)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl Default for BulkheadBuilder {
    fn default() -> Self {
        Self {
            name: Arc::from("bulkhead"),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_queue: None,
            max_wait: None,
            shed_when_inner_not_ready: false,
            listeners: Vec::new(),
        }
    }
}

impl BulkheadBuilder {
    /// The name in rejections, events and metric labels.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// How many calls may run at once (at least 1).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n;
        self
    }

    /// How many callers may wait for a permit; the next one is refused with
    /// [`BulkheadFullReason::QueueFull`](palisade_core::rejection::BulkheadFullReason::QueueFull).
    /// Zero refuses every caller that finds no permit free.
    pub fn max_queue(mut self, n: usize) -> Self {
        self.max_queue = Some(n);
        self
    }

    /// How long a caller may wait for a permit before it is refused with
    /// [`BulkheadFullReason::WaitTimedOut`](palisade_core::rejection::BulkheadFullReason::WaitTimedOut).
    /// Zero means "never wait": load shedding, refused with `NoPermit`.
    ///
    /// A bounded wait uses tokio's timer: calls that have to wait must run inside a tokio
    /// runtime with time enabled (the pass path needs no runtime).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = Some(d);
        self
    }

    /// Ignored: kept only so that code written for earlier versions still compiles.
    ///
    /// Keyed bulkheads used to evict keys by idleness and least-recent use, which could
    /// forget a key that still had calls in flight and admit a second batch for it. A key
    /// is now forgotten only when it holds no permit and has no caller queued (whatever
    /// its idle time), and only when a new key needs the room; see
    /// [`KeyedBulkheadLayer`] and [`KeyedMap`](palisade_core::keyed::KeyedMap). To trim
    /// idle keys earlier, call [`KeyedBulkheadHandle::sweep`](crate::KeyedBulkheadHandle::sweep).
    #[deprecated(
        since = "0.1.0",
        note = "ignored: a keyed bulkhead forgets a key only when it holds no permit and no waiter, \
                whatever its idle time; use KeyedBulkheadHandle::sweep to trim"
    )]
    pub fn key_idle_timeout(self, _d: Duration) -> Self {
        self
    }

    /// Never wait: refuse at once when every permit is taken (same as `max_wait(ZERO)`).
    pub fn shed_when_full(self) -> Self {
        self.max_wait(Duration::ZERO)
    }

    /// Refuse at once with [`Overloaded`](palisade_core::rejection::Overloaded) while the
    /// *inner* service is not ready, as tower's `LoadShed`: `poll_ready` gives the permit
    /// back and answers ready, and `call` refuses without calling the inner service.
    /// Without it (the default) a caller holding a permit waits for the inner service, as
    /// tower's `ConcurrencyLimit`.
    pub fn shed_when_inner_not_ready(mut self) -> Self {
        self.shed_when_inner_not_ready = true;
        self
    }

    /// Calls `f` with every event (on the task that caused it; keep it quick).
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: Fn(&BulkheadEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// `max_concurrent` of zero or above `tokio::sync::Semaphore::MAX_PERMITS`
    /// (`usize::MAX >> 3`). Every other value is accepted: `max_queue` is a counter (no
    /// allocation), and a `max_wait` too large for the clock means "effectively never"
    /// (see [`palisade_core::time`]).
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        Ok(BulkheadLayer::from_common(self.into_common()?))
    }

    /// A bulkhead per key: `key` maps each request to a key (tenant, client IP, host), each
    /// key gets its own `max_concurrent` permits and queue, and at most `max_keys` keys are
    /// held, exactly. A key is forgotten only when it holds no permit and has no caller
    /// queued (forgetting it then changes nothing), and only to make room for a new key;
    /// when every held key is busy, the new key is refused with
    /// [`KeySetFull`](palisade_core::rejection::KeySetFull) (see [`KeyedBulkheadLayer`] and
    /// [`KeyedMap`](palisade_core::keyed::KeyedMap)).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), `max_keys` of zero, and
    /// [`shed_when_inner_not_ready`](Self::shed_when_inner_not_ready), which the keyed
    /// bulkhead does not support (it readies the inner service before it knows the key).
    pub fn keyed<Req, K, F>(self, max_keys: usize, key: F) -> Result<KeyedBulkheadLayer<K, F>, ConfigError>
    where
        K: std::hash::Hash + Eq + Clone,
        F: Fn(&Req) -> K,
    {
        ensure(max_keys > 0, "max_keys", "must be at least 1")?;
        ensure(
            !self.shed_when_inner_not_ready,
            "shed_when_inner_not_ready",
            "is not supported by keyed bulkheads",
        )?;
        Ok(KeyedBulkheadLayer::new(self.into_common()?, max_keys, key))
    }

    fn into_common(self) -> Result<Arc<Common>, ConfigError> {
        check_max_concurrent(self.max_concurrent)?;
        let events = EventBus::with_listeners("bulkhead", self.name.clone(), self.listeners);
        Ok(Arc::new(Common::new(
            self.name,
            self.max_concurrent,
            self.max_queue,
            self.max_wait,
            self.shed_when_inner_not_ready,
            events,
        )))
    }
}

/// A bulkhead's settings as data (feature `serde`), e.g. from a config file.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_bulkhead::BulkheadConfig;
///
/// let config: BulkheadConfig = serde_json::from_str(
///     r#"{ "name": "db", "max_concurrent": 8, "max_queue": 32, "max_wait": "250ms" }"#,
/// ).unwrap();
/// let layer = config.build().unwrap();
/// assert_eq!(layer.handle().max_concurrent(), 8);
/// # }
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkheadConfig {
    /// See [`BulkheadBuilder::name`].
    #[serde(default)]
    pub name: Option<String>,
    /// See [`BulkheadBuilder::max_concurrent`].
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// See [`BulkheadBuilder::max_queue`]; absent = unbounded.
    #[serde(default)]
    pub max_queue: Option<usize>,
    /// See [`BulkheadBuilder::max_wait`]; absent = no limit, `"0s"` = shed when full.
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub max_wait: Option<Duration>,
    /// See [`BulkheadBuilder::shed_when_inner_not_ready`].
    #[serde(default)]
    pub shed_when_inner_not_ready: bool,
}

#[cfg(feature = "serde")]
fn default_max_concurrent() -> usize {
    DEFAULT_MAX_CONCURRENT
}

#[cfg(feature = "serde")]
impl BulkheadConfig {
    /// The builder with these settings (add listeners, then `build`).
    pub fn into_builder(self) -> BulkheadBuilder {
        let mut b = BulkheadBuilder::default().max_concurrent(self.max_concurrent);
        if let Some(name) = self.name {
            b = b.name(name);
        }
        if let Some(q) = self.max_queue {
            b = b.max_queue(q);
        }
        if let Some(w) = self.max_wait {
            b = b.max_wait(w);
        }
        if self.shed_when_inner_not_ready {
            b = b.shed_when_inner_not_ready();
        }
        b
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`BulkheadBuilder::build`].
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        self.into_builder().build()
    }
}
