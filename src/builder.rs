//! [`ServiceBuilderExt`]: one `tower::ServiceBuilder` method per palisade layer.

#[allow(unused_imports)]
use tower::layer::util::Stack;
use tower::ServiceBuilder;

/// Adds palisade's layers to a [`ServiceBuilder`].
///
/// One rule names every method: `with_` and the layer's name without `Layer`, in snake case
/// (`RetryLayer` → `with_retry`, `KeyedBulkheadLayer` → `with_keyed_bulkhead`). Each method
/// is `self.layer(layer)` with the layer's type spelled out, so a stack reads as a list of
/// patterns, and the `with_` prefix never clashes with `ServiceBuilder`'s own `retry`,
/// `rate_limit`, `timeout`, `concurrency_limit` or `load_shed`. Three methods build their
/// layer themselves: `with_scope` takes the scope, and
/// `with_http_rejections` / `with_grpc_rejections` take nothing.
///
/// The trait is sealed: only `ServiceBuilder` implements it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use palisade::prelude::*;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let svc = ServiceBuilder::new()
///     .with_bulkhead(BulkheadLayer::builder().max_concurrent(64).build()?)
///     .with_timeout(TimeoutLayer::new(Duration::from_secs(2)))
///     .with_retry(RetryLayer::builder().max_attempts(3).build()?)
///     .with_circuit_breaker(CircuitBreakerLayer::builder().consecutive_failures(5).build()?)
///     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
/// assert_eq!(svc.oneshot(1).await?, 2);
/// # Ok(()) }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds a [`RetryLayer`](palisade_retry::RetryLayer).
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn with_retry<C, Replay>(
        self,
        layer: palisade_retry::RetryLayer<C, Replay>,
    ) -> ServiceBuilder<Stack<palisade_retry::RetryLayer<C, Replay>, L>>;

    /// Adds a [`HedgeLayer`](palisade_retry::hedge::HedgeLayer).
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn with_hedge<C, Replay>(
        self,
        layer: palisade_retry::hedge::HedgeLayer<C, Replay>,
    ) -> ServiceBuilder<Stack<palisade_retry::hedge::HedgeLayer<C, Replay>, L>>;

    /// Adds palisade's [`TimeoutLayer`](palisade_timeout::TimeoutLayer) (fixed or
    /// per-request timeouts, expiring with the `TimedOut` rejection).
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    fn with_timeout<Policy>(
        self,
        layer: palisade_timeout::TimeoutLayer<Policy>,
    ) -> ServiceBuilder<Stack<palisade_timeout::TimeoutLayer<Policy>, L>>;

    /// Adds a [`CircuitBreakerLayer`](palisade_circuit_breaker::CircuitBreakerLayer).
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    fn with_circuit_breaker<C>(
        self,
        layer: palisade_circuit_breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<palisade_circuit_breaker::CircuitBreakerLayer<C>, L>>;

    /// Adds a [`KeyedCircuitBreakerLayer`](palisade_circuit_breaker::KeyedCircuitBreakerLayer)
    /// (one breaker per key).
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    fn with_keyed_circuit_breaker<C, K, F>(
        self,
        layer: palisade_circuit_breaker::KeyedCircuitBreakerLayer<C, K, F>,
    ) -> ServiceBuilder<Stack<palisade_circuit_breaker::KeyedCircuitBreakerLayer<C, K, F>, L>>;

    /// Adds a [`RateLimitLayer`](palisade_rate_limit::RateLimitLayer).
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    fn with_rate_limit<Req>(
        self,
        layer: palisade_rate_limit::RateLimitLayer<Req>,
    ) -> ServiceBuilder<Stack<palisade_rate_limit::RateLimitLayer<Req>, L>>;

    /// Adds a [`BulkheadLayer`](palisade_bulkhead::BulkheadLayer).
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn with_bulkhead(
        self,
        layer: palisade_bulkhead::BulkheadLayer,
    ) -> ServiceBuilder<Stack<palisade_bulkhead::BulkheadLayer, L>>;

    /// Adds a [`KeyedBulkheadLayer`](palisade_bulkhead::KeyedBulkheadLayer) (one bulkhead per
    /// key).
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn with_keyed_bulkhead<K, F>(
        self,
        layer: palisade_bulkhead::KeyedBulkheadLayer<K, F>,
    ) -> ServiceBuilder<Stack<palisade_bulkhead::KeyedBulkheadLayer<K, F>, L>>;

    /// Adds an [`AdaptiveLimitLayer`](palisade_bulkhead::AdaptiveLimitLayer).
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn with_adaptive_limit<C, Partition>(
        self,
        layer: palisade_bulkhead::AdaptiveLimitLayer<C, Partition>,
    ) -> ServiceBuilder<Stack<palisade_bulkhead::AdaptiveLimitLayer<C, Partition>, L>>;

    /// Adds a [`FallbackLayer`](palisade_fallback::FallbackLayer).
    #[cfg(feature = "fallback")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fallback")))]
    fn with_fallback<C, Provider>(
        self,
        layer: palisade_fallback::FallbackLayer<C, Provider>,
    ) -> ServiceBuilder<Stack<palisade_fallback::FallbackLayer<C, Provider>, L>>;

    /// Adds a [`ChaosLayer`](palisade_chaos::ChaosLayer).
    #[cfg(feature = "chaos")]
    #[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
    fn with_chaos<Req, Res>(
        self,
        layer: palisade_chaos::ChaosLayer<Req, Res>,
    ) -> ServiceBuilder<Stack<palisade_chaos::ChaosLayer<Req, Res>, L>>;

    /// Adds a [`ScopeLayer`](palisade_scope::ScopeLayer): requests belong to `scope`
    /// (refused with `Closed` once it closes, `Cancelled` when it is cancelled).
    #[cfg(feature = "scope")]
    #[cfg_attr(docsrs, doc(cfg(feature = "scope")))]
    fn with_scope(self, scope: palisade_scope::Scope)
        -> ServiceBuilder<Stack<palisade_scope::ScopeLayer, L>>;

    /// Answers palisade rejections with HTTP responses (429, 503, 504 …), so an axum router
    /// needs no `HandleErrorLayer`.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    fn with_http_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::HttpRejectionLayer, L>>;

    /// Answers palisade rejections with gRPC statuses (UNAVAILABLE, RESOURCE_EXHAUSTED …).
    #[cfg(feature = "grpc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
    fn with_grpc_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::GrpcRejectionLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "retry")]
    fn with_retry<C, Replay>(
        self,
        layer: palisade_retry::RetryLayer<C, Replay>,
    ) -> ServiceBuilder<Stack<palisade_retry::RetryLayer<C, Replay>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn with_hedge<C, Replay>(
        self,
        layer: palisade_retry::hedge::HedgeLayer<C, Replay>,
    ) -> ServiceBuilder<Stack<palisade_retry::hedge::HedgeLayer<C, Replay>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn with_timeout<Policy>(
        self,
        layer: palisade_timeout::TimeoutLayer<Policy>,
    ) -> ServiceBuilder<Stack<palisade_timeout::TimeoutLayer<Policy>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "circuit-breaker")]
    fn with_circuit_breaker<C>(
        self,
        layer: palisade_circuit_breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<palisade_circuit_breaker::CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "circuit-breaker")]
    fn with_keyed_circuit_breaker<C, K, F>(
        self,
        layer: palisade_circuit_breaker::KeyedCircuitBreakerLayer<C, K, F>,
    ) -> ServiceBuilder<Stack<palisade_circuit_breaker::KeyedCircuitBreakerLayer<C, K, F>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "rate-limit")]
    fn with_rate_limit<Req>(
        self,
        layer: palisade_rate_limit::RateLimitLayer<Req>,
    ) -> ServiceBuilder<Stack<palisade_rate_limit::RateLimitLayer<Req>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn with_bulkhead(
        self,
        layer: palisade_bulkhead::BulkheadLayer,
    ) -> ServiceBuilder<Stack<palisade_bulkhead::BulkheadLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn with_keyed_bulkhead<K, F>(
        self,
        layer: palisade_bulkhead::KeyedBulkheadLayer<K, F>,
    ) -> ServiceBuilder<Stack<palisade_bulkhead::KeyedBulkheadLayer<K, F>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn with_adaptive_limit<C, Partition>(
        self,
        layer: palisade_bulkhead::AdaptiveLimitLayer<C, Partition>,
    ) -> ServiceBuilder<Stack<palisade_bulkhead::AdaptiveLimitLayer<C, Partition>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "fallback")]
    fn with_fallback<C, Provider>(
        self,
        layer: palisade_fallback::FallbackLayer<C, Provider>,
    ) -> ServiceBuilder<Stack<palisade_fallback::FallbackLayer<C, Provider>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "scope")]
    fn with_scope(
        self,
        scope: palisade_scope::Scope,
    ) -> ServiceBuilder<Stack<palisade_scope::ScopeLayer, L>> {
        self.layer(palisade_scope::ScopeLayer::new(scope))
    }

    #[cfg(feature = "chaos")]
    fn with_chaos<Req, Res>(
        self,
        layer: palisade_chaos::ChaosLayer<Req, Res>,
    ) -> ServiceBuilder<Stack<palisade_chaos::ChaosLayer<Req, Res>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "http")]
    fn with_http_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::HttpRejectionLayer, L>> {
        self.layer(palisade_core::respond::HttpRejectionLayer::new())
    }

    #[cfg(feature = "grpc")]
    fn with_grpc_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::GrpcRejectionLayer, L>> {
        self.layer(palisade_core::respond::GrpcRejectionLayer::new())
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
