//! `palisade::prelude::*` next to `tower_http::ServiceBuilderExt` (issue 18.2): tower-http's
//! trait has the same name as palisade's; the prelude exports palisade's anonymously (`as _`) so
//! the named import cannot shadow it and both traits' methods resolve on one `ServiceBuilder`.
//! Every `with_*` method of palisade's trait resolves with both imported.
#![cfg(all(feature = "bulkhead", feature = "timeout", feature = "http"))]

use std::time::Duration;

use palisade::prelude::*;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_http::ServiceBuilderExt;

#[derive(Clone, Debug, PartialEq)]
struct Tag(&'static str);

#[tokio::test]
async fn tower_http_and_palisade_builder_methods_in_one_stack() -> Result<(), BoxError> {
    let svc = ServiceBuilder::new()
        // tower-http's ServiceBuilderExt, imported by name
        .add_extension(Tag("ext"))
        // palisade's ServiceBuilderExt, from the glob
        .with_bulkhead(BulkheadLayer::builder().max_concurrent(4).build()?)
        .service(service_fn(|req: http::Request<()>| async move {
            let tag = req.extensions().get::<Tag>().cloned();
            Ok::<_, BoxError>(http::Response::new(tag))
        }));
    let res = svc.oneshot(http::Request::new(())).await?;
    assert_eq!(res.into_body(), Some(Tag("ext")));
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_methods_from_the_prelude_stack_and_answer_rejections() -> Result<(), BoxError> {
    let svc = ServiceBuilder::new()
        .add_extension(Tag("ext"))
        .with_http_rejections()
        .with_timeout(TimeoutLayer::new(Duration::from_secs(1)))
        .service(service_fn(|req: http::Request<()>| async move {
            let slow = req.extensions().get::<Tag>().is_some();
            if slow {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Ok::<_, BoxError>(http::Response::new(String::new()))
        }));
    let res = svc.clone().oneshot(http::Request::new(())).await?;
    assert_eq!(res.status(), 504, "the timeout's TimedOut answered by with_http_rejections");
    Ok(())
}

/// The trait is still nameable at the crate root, e.g. in a generic bound.
#[test]
fn the_named_trait_stays_at_the_crate_root() {
    fn takes_ext<B: palisade::ServiceBuilderExt<tower::layer::util::Identity>>(_: B) {}
    takes_ext(ServiceBuilder::new());
}

/// Every `with_*` method resolves by its one-rule name with both traits imported (a compile
/// check: a missing or misnamed method fails the build of this test).
#[cfg(all(
    feature = "retry",
    feature = "circuit-breaker",
    feature = "rate-limit",
    feature = "fallback",
    feature = "chaos",
    feature = "scope",
    feature = "grpc"
))]
#[allow(dead_code, clippy::too_many_arguments)]
fn every_with_method_resolves<A, B, C, D, E, F, G, H, I, J, K, M, N, O>(
    retry: palisade::retry::RetryLayer<A, B>,
    hedge: palisade::retry::hedge::HedgeLayer<C, D>,
    timeout: TimeoutLayer<E>,
    breaker: CircuitBreakerLayer<F>,
    keyed_breaker: palisade::circuit_breaker::KeyedCircuitBreakerLayer<G, H, I>,
    rate_limit: RateLimitLayer<J>,
    bulkhead: BulkheadLayer,
    keyed_bulkhead: palisade::bulkhead::KeyedBulkheadLayer<K, M>,
    adaptive: AdaptiveLimitLayer<N, O>,
    fallback: FallbackLayer<A, C>,
    chaos: ChaosLayer<u32, u32>,
    scope: palisade::scope::Scope,
) {
    let _ = ServiceBuilder::new()
        .add_extension(Tag("ext"))
        .with_http_rejections()
        .with_grpc_rejections()
        .with_scope(scope)
        .with_rate_limit(rate_limit)
        .with_bulkhead(bulkhead)
        .with_keyed_bulkhead(keyed_bulkhead)
        .with_adaptive_limit(adaptive)
        .with_fallback(fallback)
        .with_timeout(timeout)
        .with_retry(retry)
        .with_hedge(hedge)
        .with_circuit_breaker(breaker)
        .with_keyed_circuit_breaker(keyed_breaker)
        .with_chaos(chaos);
}
