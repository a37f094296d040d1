//! [`TimeoutLayer`]: `new(d)`, `builder()`, `handle()` and the `Layer` impl.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::event::EventBus;
use tower_layer::Layer;

use crate::builder::TimeoutBuilder;
use crate::handle::{Shared, TimeoutHandle};
use crate::policy::FixedTimeout;
use crate::service::Timeout;

/// Applies a timeout to every call; see the [crate docs](crate).
///
/// `Policy` is [`FixedTimeout`] (from [`new`](Self::new) or the builder's
/// [`timeout`](TimeoutBuilder::timeout)) or [`PerRequest`](crate::PerRequest).
///
/// # Clone
///
/// The layer keeps its policy and an `Arc` of its name, counter and listeners: every service
/// it builds, and every clone of those, counts into the same [`TimeoutHandle`]. A timeout
/// holds no reservation of its own (`poll_ready` is the inner service's).
pub struct TimeoutLayer<Policy = FixedTimeout> {
    policy: Policy,
    shared: Arc<Shared>,
}

impl<Policy: Clone> Clone for TimeoutLayer<Policy> {
    fn clone(&self) -> Self {
        Self { policy: self.policy.clone(), shared: self.shared.clone() }
    }
}

impl<Policy: fmt::Debug> fmt::Debug for TimeoutLayer<Policy> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer").field("name", &self.shared.name).field("policy", &self.policy).finish()
    }
}

impl TimeoutLayer {
    /// A layer with the same `timeout` for every call, named `"timeout"`; it cannot fail.
    ///
    /// As tower's `TimeoutLayer::new`, every value means something: the inner future is
    /// polled first, so with `Duration::ZERO` a call that answers on its first poll passes
    /// and any other times out at once. A huge timeout (`Duration::MAX`) saturates to
    /// "effectively never" (`palisade_core::time`), it never panics. Use
    /// [`builder`](Self::builder) for a name, listeners or a per-request timeout.
    pub fn new(timeout: Duration) -> Self {
        let name: Arc<str> = Arc::from("timeout");
        let bus = EventBus::new("timeout", name.clone());
        Self::from_parts(FixedTimeout(timeout), Arc::new(Shared::new(name, bus)))
    }

    /// A builder with [`TimeoutConfig`](crate::TimeoutConfig)'s defaults.
    pub fn builder() -> TimeoutBuilder {
        TimeoutBuilder::default()
    }
}

impl<Policy> TimeoutLayer<Policy> {
    pub(crate) fn from_parts(policy: Policy, shared: Arc<Shared>) -> Self {
        Self { policy, shared }
    }

    /// A handle on the counter and events of this layer and every service it builds.
    pub fn handle(&self) -> TimeoutHandle {
        TimeoutHandle { shared: self.shared.clone() }
    }
}

impl<S, Policy: Clone> Layer<S> for TimeoutLayer<Policy> {
    type Service = Timeout<S, Policy>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::from_parts(inner, self.policy.clone(), self.shared.clone())
    }
}
