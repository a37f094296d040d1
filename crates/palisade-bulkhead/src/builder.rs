//! `BulkheadBuilder` and `KeyedBulkheadBuilder`: a [`BulkheadConfig`] plus what cannot be
//! serialised (listeners, the key function).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::event::{EventBus, Listener};
use palisade_core::keyed::Unkeyed;
use palisade_core::WhenFull;

use crate::compartment::Common;
use crate::config::BulkheadConfig;
use crate::event::BulkheadEvent;
use crate::keyed::KeyedBulkheadLayer;
use crate::layer::BulkheadLayer;

/// The setters both builders share: one line each, writing [`BulkheadConfig`].
macro_rules! config_setters {
    () => {
        /// Sets [`BulkheadConfig::name`].
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.config.name = name.into();
            self
        }

        /// Sets [`BulkheadConfig::max_concurrent`].
        pub fn max_concurrent(mut self, n: usize) -> Self {
            self.config.max_concurrent = n;
            self
        }

        /// Sets [`BulkheadConfig::when_full`].
        pub fn when_full(mut self, when_full: WhenFull) -> Self {
            self.config.when_full = when_full;
            self
        }

        /// Sets [`BulkheadConfig::max_queue`].
        pub fn max_queue(mut self, n: usize) -> Self {
            self.config.max_queue = Some(n);
            self
        }

        /// Sets [`BulkheadConfig::retry_after`].
        pub fn retry_after(mut self, d: Duration) -> Self {
            self.config.retry_after = Some(d);
            self
        }

        /// Calls `f` with every event (on the task that caused it; keep it quick). A
        /// panicking listener is contained.
        pub fn on_event<OnEvent>(mut self, f: OnEvent) -> Self
        where
            OnEvent: Fn(&BulkheadEvent) + Send + Sync + 'static,
        {
            self.listeners.push(Arc::new(f));
            self
        }
    };
}

/// Builds a [`BulkheadLayer`], or with [`keyed`](Self::keyed) a [`KeyedBulkheadLayer`].
/// Its settings, their defaults and their checks are [`BulkheadConfig`]'s.
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::BulkheadLayer;
/// use palisade_core::WhenFull;
///
/// let layer = BulkheadLayer::builder()
///     .name("db")
///     .max_concurrent(8)
///     .when_full(WhenFull::wait(Duration::from_millis(250)))
///     .max_queue(32)
///     .retry_after(Duration::from_secs(1))
///     .build()
///     .unwrap();
/// assert_eq!(layer.handle().max_concurrent(), 8);
/// ```
#[must_use]
pub struct BulkheadBuilder {
    config: BulkheadConfig,
    listeners: Vec<Listener<BulkheadEvent>>,
}

impl fmt::Debug for BulkheadBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl Default for BulkheadBuilder {
    fn default() -> Self {
        Self::from_config(BulkheadConfig::default())
    }
}

impl BulkheadBuilder {
    pub(crate) fn from_config(config: BulkheadConfig) -> Self {
        Self { config, listeners: Vec::new() }
    }

    config_setters!();

    /// Sets [`BulkheadConfig::shed_when_inner_not_ready`].
    pub fn shed_when_inner_not_ready(mut self) -> Self {
        self.config.shed_when_inner_not_ready = true;
        self
    }

    /// A bulkhead per key: `key` maps each request to its key (tenant, client IP, host) or
    /// to `None` (see [`KeyedBulkheadBuilder::when_unkeyed`]); each key gets its own
    /// `max_concurrent` permits and queue. See [`KeyedBulkheadLayer`].
    ///
    /// ```
    /// use palisade_bulkhead::BulkheadLayer;
    ///
    /// // Two calls at once per tenant, 10 000 tenants at most. The key is the parsed tenant
    /// // id, not the header value (a client chooses its length; see the Memory section of
    /// // `KeyedBulkheadLayer`).
    /// let per_tenant = BulkheadLayer::builder()
    ///     .max_concurrent(2)
    ///     .keyed(|req: &http::Request<()>| {
    ///         req.headers().get("x-tenant")?.to_str().ok()?.parse::<u64>().ok()
    ///     })
    ///     .max_keys(10_000)
    ///     .build()
    ///     .unwrap();
    /// # let _ = per_tenant;
    /// ```
    pub fn keyed<Req, K, F>(self, key: F) -> KeyedBulkheadBuilder<K, F>
    where
        F: Fn(&Req) -> Option<K>,
    {
        KeyedBulkheadBuilder { config: self.config, listeners: self.listeners, key, _key: PhantomData }
    }

    /// Checks the settings ([`BulkheadConfig::validate`]) and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`BulkheadConfig::validate`].
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        self.config.validate()?;
        Ok(BulkheadLayer::from_common(common(&self.config, self.listeners)))
    }
}

/// Builds a [`KeyedBulkheadLayer`]; from [`BulkheadBuilder::keyed`].
#[must_use]
pub struct KeyedBulkheadBuilder<K, F> {
    config: BulkheadConfig,
    listeners: Vec<Listener<BulkheadEvent>>,
    key: F,
    _key: PhantomData<fn() -> K>,
}

impl<K, F> fmt::Debug for KeyedBulkheadBuilder<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadBuilder")
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl<K, F> KeyedBulkheadBuilder<K, F> {
    config_setters!();

    /// Sets [`BulkheadConfig::max_keys`].
    pub fn max_keys(mut self, n: usize) -> Self {
        self.config.max_keys = n;
        self
    }

    /// Sets [`BulkheadConfig::when_unkeyed`]: `Reject` (the default) refuses with
    /// [`KeyMissing`](crate::error::KeyMissing), `PassThrough` lets the request through
    /// unlimited, `Shared` puts every unkeyed request in one shared compartment (outside the
    /// `max_keys` count). The first unkeyed request logs a warning, once per layer.
    pub fn when_unkeyed(mut self, when_unkeyed: Unkeyed) -> Self {
        self.config.when_unkeyed = when_unkeyed;
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`BulkheadConfig::validate`], and
    /// [`shed_when_inner_not_ready`](BulkheadConfig::shed_when_inner_not_ready), which the
    /// keyed bulkhead does not support (it readies the inner service before it knows the key).
    pub fn build(self) -> Result<KeyedBulkheadLayer<K, F>, ConfigError>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        self.config.validate()?;
        palisade_core::config::ensure(
            !self.config.shed_when_inner_not_ready,
            "shed_when_inner_not_ready",
            "is not supported by keyed bulkheads",
        )?;
        let max_keys = self.config.max_keys;
        let when_unkeyed = self.config.when_unkeyed;
        Ok(KeyedBulkheadLayer::new(common(&self.config, self.listeners), max_keys, when_unkeyed, self.key))
    }
}

/// The shared settings and observers of a validated config.
pub(crate) fn common(config: &BulkheadConfig, listeners: Vec<Listener<BulkheadEvent>>) -> Arc<Common> {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let events = EventBus::with_listeners("bulkhead", name.clone(), listeners);
    Arc::new(Common::new(name, config, events))
}
