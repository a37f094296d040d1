#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4: the memory a keyed breaker lets callers claim — one breaker and one
//! window per key, made as soon as a new key calls, so an attacker choosing keys gets
//! `max_keys × per-key size` — is bounded at build time. A count window of 2^20 calls with
//! the default 100,000 keys was 100 GB an attacker could make the process allocate.

use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use tower::{Service, ServiceExt};

#[allow(clippy::trivially_copy_pass_by_ref, clippy::unnecessary_wraps)] // a key function's shape
fn host(req: &u32) -> Option<u32> {
    Some(*req)
}

#[test]
fn a_huge_window_times_many_keys_is_a_config_error() {
    // A count window of 1,048,575 calls (one byte each) × 100,000 keys (the default).
    let err = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .count_window((1 << 20) - 1)
        .keyed(host)
        .build()
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.field(), "max_keys", "{err}");
    assert_eq!(err.conflicting_field(), Some("count_window"), "{err}");

    // A time window of 1,000 buckets × 1,000,000 keys.
    let err = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .time_window(Duration::from_secs(60))
        .time_window_buckets(1000)
        .keyed(host)
        .max_keys(1_000_000)
        .build()
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.field(), "max_keys", "{err}");
    assert_eq!(err.conflicting_field(), Some("time_window_buckets"), "{err}");

    // The most keys a config may ask for with the default window (1e9) is refused too.
    let err =
        CircuitBreakerLayer::builder().keyed(host).max_keys(1_000_000_000).build().map(|_| ()).unwrap_err();
    assert_eq!(err.field(), "max_keys", "{err}");
}

#[test]
fn the_same_bound_holds_for_a_config_read_from_a_file() {
    let config: CircuitBreakerConfig =
        serde_json::from_str(r#"{"failure_rate": 0.5, "count_window": 1048575, "max_keys": 100000}"#)
            .unwrap();
    let err = config.into_builder().keyed(host).build().map(|_| ()).unwrap_err();
    assert_eq!(err.field(), "max_keys", "{err}");
    // The same settings for one breaker (not keyed) cost one window: fine.
    let config: CircuitBreakerConfig =
        serde_json::from_str(r#"{"failure_rate": 0.5, "count_window": 1048575, "max_keys": 100000}"#)
            .unwrap();
    config.into_builder().build().unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn sensible_keyed_configs_still_build_and_serve() {
    for (builder, keys) in [
        // The defaults: a count window of 100 × 100,000 keys.
        (CircuitBreakerLayer::builder(), 100_000),
        // A big window with few keys.
        (CircuitBreakerLayer::builder().failure_rate(0.5).count_window((1 << 20) - 1), 1000),
        // Resilience4j's time window with the default key bound.
        (CircuitBreakerLayer::builder().failure_rate(0.5).time_window(Duration::from_secs(60)), 100_000),
    ] {
        let layer = builder.keyed(host).max_keys(keys).build().unwrap();
        let mut svc = tower::ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
        for k in 0..10 {
            assert_eq!(svc.ready().await.unwrap().call(k).await.unwrap(), k);
        }
    }
}
