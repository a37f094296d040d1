//! [`RateLimitLayer`]: `new(quota)`, `builder()`, `handle()` and the `Layer` impl.

use std::fmt;
use std::sync::Arc;

use palisade_core::clock::Clock;
use palisade_core::event::{EventBus, Listener};
use palisade_core::metric::Counter;
use palisade_core::when_full::WhenFull;
use tower_layer::Layer;

use crate::builder::RateLimitBuilder;
use crate::config::RateLimitConfig;
use crate::event::RateLimitEvent;
use crate::handle::RateLimitHandle;
use crate::limiter::RateLimiter;
use crate::quota::Quota;
use crate::service::RateLimit;
use crate::shared::{Core, Shared, Striped, Weigher};
use crate::tier::{TierRt, TierView};

/// Applies rate limits to a service; see the [crate docs](crate).
///
/// ```
/// use palisade_rate_limit::{Quota, RateLimitLayer};
///
/// // 100 per second for all requests together, refusing the rest at once.
/// let layer = RateLimitLayer::<String>::new(Quota::per_second(100));
/// assert_eq!(layer.handle().name(), "rate_limit");
/// ```
///
/// # Clone
///
/// The limits live in an `Arc` created by [`new`](Self::new) or
/// [`build`](RateLimitBuilder::build): every service this layer makes, and every clone of
/// those services, share them. Two layers built separately do not.
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
    /// One token bucket of `quota` for all requests, refusing at once what it cannot admit
    /// (named `"rate_limit"`, tokio's clock). Never fails: a quota that
    /// [`Quota::validate`] would refuse is brought to [`Quota::nearest_valid`] (a zero limit,
    /// period or burst becomes 1). For anything else use [`builder`](Self::builder).
    pub fn new(quota: Quota) -> Self {
        let config = RateLimitConfig::default();
        let limiter = RateLimiter::from_valid(quota.nearest_valid(), config.algorithm, &Clock::default());
        let (rt, view) = TierRt::direct(limiter);
        Self::assemble(&config.shared_name(), config.when_full, Vec::new(), vec![rt], vec![view], None)
    }

    /// A builder for everything else: algorithm, keys, tiers, waiting, weights, listeners.
    pub fn builder() -> RateLimitBuilder<Req> {
        RateLimitBuilder::from_config(RateLimitConfig::default())
    }
}

impl<Req> RateLimitLayer<Req> {
    pub(crate) fn assemble(
        name: &Arc<str>,
        when_full: WhenFull,
        listeners: Vec<Listener<RateLimitEvent>>,
        runtimes: Vec<TierRt<Req>>,
        views: Vec<TierView>,
        weigher: Option<Weigher<Req>>,
    ) -> Self {
        let label: &str = name;
        let core = Arc::new(Core::new(
            name.clone(),
            when_full,
            views.into_boxed_slice(),
            EventBus::with_listeners("rate_limit", name.clone(), listeners),
            Striped::new("palisade_rate_limit_admitted_total", label),
            Counter::new("palisade_rate_limit_rejected_total", label),
            Counter::new("palisade_rate_limit_waited_total", label),
            Counter::new("palisade_rate_limit_keys_evicted_total", label),
        ));
        Self { shared: Arc::new(Shared::new(core, runtimes.into_boxed_slice(), weigher)) }
    }

    /// A handle to inspect the limits, change quotas and listen to events.
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
