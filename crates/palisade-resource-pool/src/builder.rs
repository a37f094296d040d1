//! [`ResourcePoolBuilder`]: a [`ResourcePoolConfig`] plus what cannot be serialised (the
//! lifecycle hooks, listeners).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::event::Listener;
use palisade_core::when_full::WhenFull;

use crate::config::ResourcePoolConfig;
use crate::event::ResourcePoolEvent;
use crate::lifecycle::Lifecycle;
use crate::pool::ResourcePool;
use crate::shared::Shared;

/// Builds a [`ResourcePool`]; start with [`ResourcePool::builder`]. Every setting is a field
/// of [`ResourcePoolConfig`] (defaults and rules there).
pub struct ResourcePoolBuilder<Hooks: Lifecycle> {
    lifecycle: Hooks,
    config: ResourcePoolConfig,
    listeners: Vec<Listener<ResourcePoolEvent>>,
}

impl<Hooks: Lifecycle> fmt::Debug for ResourcePoolBuilder<Hooks> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourcePoolBuilder")
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl<Hooks: Lifecycle> ResourcePoolBuilder<Hooks> {
    pub(crate) fn new(lifecycle: Hooks) -> Self {
        Self { lifecycle, config: ResourcePoolConfig::default(), listeners: Vec::new() }
    }

    /// Replaces every setting with `config` (listeners are kept).
    pub fn config(mut self, config: ResourcePoolConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`ResourcePoolConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`ResourcePoolConfig::min_size`].
    pub fn min_size(mut self, min: usize) -> Self {
        self.config.min_size = min;
        self
    }

    /// Sets [`ResourcePoolConfig::max_size`].
    pub fn max_size(mut self, max: usize) -> Self {
        self.config.max_size = max;
        self
    }

    /// Sets [`ResourcePoolConfig::when_full`].
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.config.when_full = when_full;
        self
    }

    /// Sets [`ResourcePoolConfig::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// Sets [`ResourcePoolConfig::create_timeout`].
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.config.create_timeout = timeout;
        self
    }

    /// Sets [`ResourcePoolConfig::recycle_timeout`].
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.config.recycle_timeout = timeout;
        self
    }

    /// Sets [`ResourcePoolConfig::destroy_timeout`].
    pub fn destroy_timeout(mut self, timeout: Duration) -> Self {
        self.config.destroy_timeout = timeout;
        self
    }

    /// Calls `listener` with every [`ResourcePoolEvent`] (a panicking listener is contained
    /// and logged).
    pub fn on_event<OnEvent>(mut self, listener: OnEvent) -> Self
    where
        OnEvent: Fn(&ResourcePoolEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Validates the settings ([`ResourcePoolConfig::validate`]) and builds the pool;
    /// inside a Tokio runtime, starts creating `min_size` resources in the background.
    ///
    /// # Errors
    ///
    /// The first invalid setting, named by its field.
    pub fn build(self) -> Result<ResourcePool<Hooks>, ConfigError> {
        self.config.validate()?;
        let shared = Arc::new(Shared::new(self.lifecycle, self.config, self.listeners));
        let pool = ResourcePool::from_shared(shared.clone());
        shared.replenish();
        shared.ensure_reaper();
        Ok(pool)
    }
}
