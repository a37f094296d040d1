use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::config::RateLimitLayerBuilder;
use crate::handle::RateLimitHandle;
use crate::service::RateLimit;
use crate::shared::Shared;

/// Applies rate limits to a service; see the [crate docs](crate).
///
/// # Clone
///
/// The limits live in an `Arc` created by [`build`](RateLimitLayerBuilder::build): every
/// service this layer makes, and every clone of those services, share them. Two layers built
/// separately do not.
pub struct RateLimitLayer<Req> {
    shared: Arc<Shared<Req>>,
}

impl<Req> Clone for RateLimitLayer<Req> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<Req> fmt::Debug for RateLimitLayer<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer").field("shared", &self.shared).finish()
    }
}

impl<Req: 'static> RateLimitLayer<Req> {
    /// A builder; add at least one quota or tier.
    pub fn builder() -> RateLimitLayerBuilder<Req> {
        RateLimitLayerBuilder::new()
    }
}

impl<Req> RateLimitLayer<Req> {
    pub(crate) fn from_shared(shared: Arc<Shared<Req>>) -> Self {
        Self { shared }
    }

    /// A handle to inspect the limits and subscribe to events.
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(self.shared.core.clone())
    }
}

impl<S, Req> Layer<S> for RateLimitLayer<Req> {
    type Service = RateLimit<S, Req>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.shared.clone())
    }
}
