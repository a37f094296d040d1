#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 15 kinds 1 and 2 for the timeout (moved from palisade-retry's fuzz test): every
//! constructor, fed extreme durations, gives a `ConfigError` or a layer that serves calls
//! without panicking or hanging (paused clock, every call bounded far in the future).

use std::time::Duration;

use palisade_core::BoxError;
use palisade_timeout::TimeoutLayer;
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(86_400 * 365 * 1000)),
        Just(Duration::MAX),
        (0u64..10_000).prop_map(Duration::from_millis),
    ]
}

/// Answers after `delay`.
fn slow(delay: Duration) -> impl Service<u32, Response = u32, Error = BoxError> + Clone {
    tower::service_fn(move |req: u32| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, BoxError>(req)
    })
}

async fn serve<S: Service<u32, Response = u32, Error = BoxError>>(svc: S) {
    let _ = tokio::time::timeout(Duration::from_secs(86_400 * 365 * 100), svc.oneshot(7)).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn timeout_layer_never_panics(timeout in duration(), delay in duration()) {
        rt().block_on(serve(TimeoutLayer::new(timeout).layer(slow(delay))));
        if let Ok(layer) = TimeoutLayer::builder().timeout(timeout).build() {
            rt().block_on(serve(layer.layer(slow(delay))));
        }
    }

    #[test]
    fn per_request_timeouts_never_panic(timeout in prop::option::of(duration()), delay in duration()) {
        let layer = TimeoutLayer::builder().per_request(move |_: &u32| timeout).build().unwrap();
        rt().block_on(serve(layer.layer(slow(delay))));
    }
}

/// Issue 15.1's input, as given: `TimeoutLayer::new(Duration::MAX)` serves.
#[test]
fn huge_timeouts_do_not_panic() {
    rt().block_on(async {
        let svc = TimeoutLayer::new(Duration::MAX).layer(slow(Duration::ZERO));
        assert_eq!(svc.oneshot(1).await.unwrap(), 1);
        let huge = Duration::from_secs(200_000_000_000_000 * 86_400); // "200000000000000d"
        let svc = TimeoutLayer::builder().timeout(huge).build().unwrap().layer(slow(Duration::from_secs(5)));
        assert_eq!(svc.oneshot(2).await.unwrap(), 2);
    });
}
