//! [`PolicyLayer`]: one policy's layers, stacked as one tower `Layer`.

use std::fmt;
use std::sync::Arc;

use palisade_core::{BoxError, ConfigError};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder};

use super::config::PolicyConfig;
use super::handle::PatternHandle;
use crate::bulkhead::adaptive::{AdaptiveLimitConfig, AdaptiveLimitLayer};
use crate::bulkhead::BulkheadLayer;
use crate::chaos::{ChaosConfig, ChaosLayer};
use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use crate::rate_limit::{RateLimitBuilder, RateLimitConfig, RateLimitLayer};
use crate::retry::{RetryConfig, RetryLayer};
use crate::timeout::{TimeoutConfig, TimeoutLayer};

/// The stack of one policy, from [`Registry::layer`](super::Registry::layer): the layers of
/// the sections present, outermost first `rate_limit`, `bulkhead`, `adaptive_limit`, `timeout`, `retry`,
/// `circuit_breaker`, `attempt_timeout`, `chaos` (the README's "Layer order").
///
/// # The service type
///
/// Which sections a policy has is known only when the file is read, so the stack's type
/// cannot depend on it: the layer wraps the service in `Either`s (a missing section is a
/// pass-through, no call on the hot path) and boxes the whole stack once, as a
/// [`BoxCloneSyncService<Req, Res, BoxError>`] — one name for every policy (store it in a
/// struct or an axum state), `Clone + Send + Sync`, at the cost of one boxed future per
/// call. The inner service's error becomes a [`BoxError`], as every palisade layer's.
///
/// # Clone
///
/// Clones, and every service they build, share the policy's state (permits, buckets,
/// breaker, budget): the state lives in the registry, and a [`reload`](super::Registry::reload)
/// reaches services already built.
pub struct PolicyLayer<Req, Res> {
    pub(crate) name: Arc<str>,
    pub(crate) rate_limit: Option<RateLimitLayer<Req>>,
    pub(crate) bulkhead: Option<BulkheadLayer>,
    pub(crate) adaptive_limit: Option<AdaptiveLimitLayer>,
    pub(crate) timeout: Option<TimeoutLayer>,
    pub(crate) retry: Option<RetryLayer>,
    pub(crate) circuit_breaker: Option<CircuitBreakerLayer>,
    pub(crate) attempt_timeout: Option<TimeoutLayer>,
    pub(crate) chaos: Option<ChaosLayer<Req, Res>>,
}

impl<Req, Res> Clone for PolicyLayer<Req, Res> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            rate_limit: self.rate_limit.clone(),
            bulkhead: self.bulkhead.clone(),
            adaptive_limit: self.adaptive_limit.clone(),
            timeout: self.timeout.clone(),
            retry: self.retry.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            attempt_timeout: self.attempt_timeout.clone(),
            chaos: self.chaos.clone(),
        }
    }
}

impl<Req, Res> fmt::Debug for PolicyLayer<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<_> = self.handles().iter().map(|h| h.kind().as_str()).collect();
        f.debug_struct("PolicyLayer")
            .field("name", &self.name)
            .field("sections", &kinds)
            .finish_non_exhaustive()
    }
}

impl<Req, Res> PolicyLayer<Req, Res> {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handles of the sections present, outermost first.
    pub fn handles(&self) -> Vec<PatternHandle> {
        let mut handles = Vec::new();
        if let Some(l) = &self.rate_limit {
            handles.push(PatternHandle::RateLimit(l.handle()));
        }
        if let Some(l) = &self.bulkhead {
            handles.push(PatternHandle::Bulkhead(l.handle()));
        }
        if let Some(l) = &self.adaptive_limit {
            handles.push(PatternHandle::AdaptiveLimit(l.handle()));
        }
        if let Some(l) = &self.timeout {
            handles.push(PatternHandle::Timeout(l.handle()));
        }
        if let Some(l) = &self.retry {
            handles.push(PatternHandle::Retry(l.handle()));
        }
        if let Some(l) = &self.circuit_breaker {
            handles.push(PatternHandle::CircuitBreaker(l.handle()));
        }
        if let Some(l) = &self.attempt_timeout {
            handles.push(PatternHandle::AttemptTimeout(l.handle()));
        }
        if let Some(l) = &self.chaos {
            handles.push(PatternHandle::Chaos(l.handle()));
        }
        handles
    }
}

/// `e` as a [`BoxError`] (a `fn` item: `Clone + Send + Sync`, as `BoxCloneSyncService` needs).
fn into_box_error<E: Into<BoxError>>(e: E) -> BoxError {
    e.into()
}

impl<S, Req, Res> Layer<S> for PolicyLayer<Req, Res>
where
    S: Service<Req, Response = Res> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    Req: Clone + Send + 'static,
    Res: Send + 'static,
{
    type Service = BoxCloneSyncService<Req, Res, BoxError>;

    fn layer(&self, inner: S) -> Self::Service {
        let stack = ServiceBuilder::new()
            .option_layer(self.rate_limit.clone())
            .option_layer(self.bulkhead.clone())
            .option_layer(self.adaptive_limit.clone())
            .option_layer(self.timeout.clone())
            .option_layer(self.retry.clone())
            .option_layer(self.circuit_breaker.clone())
            .option_layer(self.attempt_timeout.clone())
            .option_layer(self.chaos.clone())
            .map_err(into_box_error::<S::Error>)
            .service(inner);
        BoxCloneSyncService::new(stack)
    }
}

/// What code adds to a policy's rate limit builder (a key function, a weigher, listeners).
pub(crate) type RateLimitHook<Req> =
    Arc<dyn Fn(RateLimitBuilder<Req>) -> RateLimitBuilder<Req> + Send + Sync>;

/// Builds one policy's layers; every error under `policies.<name>.<section>`.
pub(crate) fn build<Req: 'static, Res>(
    name: &str,
    config: &PolicyConfig,
    rate_limit_hook: Option<&RateLimitHook<Req>>,
) -> Result<PolicyLayer<Req, Res>, ConfigError> {
    let policy = format!("policies.{name}");
    let section = |s: &'static str| {
        let policy = policy.clone();
        move |e: ConfigError| e.in_section(s).in_section(&policy)
    };
    Ok(PolicyLayer {
        name: Arc::from(name),
        rate_limit: config
            .rate_limit
            .clone()
            .map(|c| {
                let builder = RateLimitConfig::into_builder(c);
                match rate_limit_hook {
                    Some(hook) => hook(builder).build(),
                    None => builder.build(),
                }
            })
            .transpose()
            .map_err(section("rate_limit"))?,
        bulkhead: config
            .bulkhead
            .clone()
            .map(|c| c.into_builder().build())
            .transpose()
            .map_err(section("bulkhead"))?,
        adaptive_limit: config
            .adaptive_limit
            .clone()
            .map(|c| AdaptiveLimitConfig::into_builder(c).build())
            .transpose()
            .map_err(section("adaptive_limit"))?,
        timeout: config.timeout.clone().map(TimeoutConfig::build).transpose().map_err(section("timeout"))?,
        retry: config.retry.clone().map(RetryConfig::build).transpose().map_err(section("retry"))?,
        circuit_breaker: config
            .circuit_breaker
            .clone()
            .map(CircuitBreakerConfig::build)
            .transpose()
            .map_err(section("circuit_breaker"))?,
        attempt_timeout: config
            .attempt_timeout
            .clone()
            .map(TimeoutConfig::build)
            .transpose()
            .map_err(section("attempt_timeout"))?,
        chaos: config.chaos.clone().map(ChaosConfig::build).transpose().map_err(section("chaos"))?,
    })
}
