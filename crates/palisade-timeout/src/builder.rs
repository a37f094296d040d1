//! [`TimeoutBuilder`]: a [`TimeoutConfig`] plus what cannot be serialised (a per-request
//! function, listeners).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::event::{EventBus, Listener};

use crate::config::TimeoutConfig;
use crate::event::TimeoutEvent;
use crate::handle::Shared;
use crate::layer::TimeoutLayer;
use crate::policy::{FixedTimeout, PerRequest};

/// Builds a [`TimeoutLayer`]; made by [`TimeoutLayer::builder`] or
/// [`TimeoutConfig::into_builder`].
///
/// `Policy` is `()` for the fixed [`timeout`](Self::timeout), or [`PerRequest`] once
/// [`per_request`](Self::per_request) chose the timeout per request.
#[must_use]
pub struct TimeoutBuilder<Policy = ()> {
    config: TimeoutConfig,
    policy: Policy,
    listeners: Vec<Listener<TimeoutEvent>>,
}

impl<Policy: fmt::Debug> fmt::Debug for TimeoutBuilder<Policy> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutBuilder")
            .field("config", &self.config)
            .field("policy", &self.policy)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl Default for TimeoutBuilder {
    fn default() -> Self {
        Self::from_config(TimeoutConfig::default())
    }
}

impl TimeoutBuilder {
    pub(crate) fn from_config(config: TimeoutConfig) -> Self {
        Self { config, policy: (), listeners: Vec::new() }
    }
}

impl<Policy> TimeoutBuilder<Policy> {
    /// Replaces every setting with `config` (the per-request function and listeners are
    /// kept).
    pub fn config(mut self, config: TimeoutConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`TimeoutConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`TimeoutConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Chooses the timeout of each request with `choose` (for instance
    /// [`grpc_timeout`](crate::grpc_timeout), the caller's `grpc-timeout` header); `None`
    /// means no timeout for that request. [`TimeoutConfig::timeout`] is then not used.
    pub fn per_request<Choose, Req>(self, choose: Choose) -> TimeoutBuilder<PerRequest<Choose>>
    where
        Choose: Fn(&Req) -> Option<Duration>,
    {
        TimeoutBuilder { config: self.config, policy: PerRequest(choose), listeners: self.listeners }
    }

    /// Registers a listener for every [`TimeoutEvent`]. A listener that panics is caught and
    /// logged.
    pub fn on_event<OnEvent>(mut self, listener: OnEvent) -> Self
    where
        OnEvent: Fn(&TimeoutEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    fn shared(self) -> (Arc<Shared>, Policy) {
        let name: Arc<str> = self.config.name.into();
        let bus = EventBus::with_listeners("timeout", name.clone(), self.listeners);
        (Arc::new(Shared::new(name, bus)), self.policy)
    }
}

impl TimeoutBuilder {
    /// Validates the settings and builds a layer with the fixed timeout.
    ///
    /// # Errors
    ///
    /// As [`TimeoutConfig::validate`].
    pub fn build(self) -> Result<TimeoutLayer, ConfigError> {
        self.config.validate()?;
        let timeout = FixedTimeout(self.config.timeout);
        let (shared, ()) = self.shared();
        Ok(TimeoutLayer::from_parts(timeout, shared))
    }
}

impl<Choose> TimeoutBuilder<PerRequest<Choose>> {
    /// Validates the settings (the name; the fixed timeout is not used) and builds a layer
    /// whose timeout is chosen per request.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` when it is empty.
    pub fn build(self) -> Result<TimeoutLayer<PerRequest<Choose>>, ConfigError> {
        palisade_core::config::ensure(!self.config.name.is_empty(), "name", "must not be empty")?;
        let (shared, policy) = self.shared();
        Ok(TimeoutLayer::from_parts(policy, shared))
    }
}
