#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 15.9: breaker stacks built from closures can be awaited in spawned tasks. These
//! are compile tests first (rust-lang/rust#64552).

use std::io;

use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, KeyExtractor};
use palisade_core::classify::{classify_fn, Classification};
use palisade_core::BoxError;
use tower::{service_fn, Layer, ServiceExt};

#[tokio::test]
async fn a_breaker_over_closures_can_be_awaited_in_a_spawned_task() {
    // A closure classifier and a closure service whose error has no lifetime in it.
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .classifier(classify_fn(|r: &Result<u32, io::Error>| match r {
            Ok(_) => Classification::success(),
            Err(_) => Classification::failure(),
        }))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|x: u32| async move {
        if x == 0 {
            Err(io::Error::other("zero"))
        } else {
            Ok(x)
        }
    }));
    let s = svc.clone();
    let task = tokio::spawn(async move { s.oneshot(0).await });
    assert!(task.await.unwrap().is_err());
    let task = tokio::spawn(async move { svc.oneshot(1).await });
    let err = task.await.unwrap().unwrap_err();
    assert!(err.is::<palisade_core::rejection::CircuitOpen>());
}

#[tokio::test]
async fn a_keyed_breaker_with_a_closure_key_can_be_awaited_in_a_spawned_task() {
    let layer =
        CircuitBreakerLayer::builder().consecutive_failures(1).keyed(|x: &u32| Some(x % 2)).build().unwrap();
    let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, io::Error>(x) }));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..4 {
        let svc = svc.clone();
        set.spawn(async move { svc.oneshot(i).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
}

/// A named stack type, as a library stores it.
struct Parity;

impl KeyExtractor<u32> for Parity {
    type Key = u32;
    fn key(&self, x: &u32) -> Option<u32> {
        Some(x % 2)
    }
}

type Stored = CircuitBreaker<tower::util::BoxCloneSyncService<u32, u32, BoxError>>;

#[tokio::test]
async fn a_stored_breaker_over_a_box_error_service_is_spawned_through_oneshot() {
    let svc: Stored = CircuitBreakerLayer::builder().build().unwrap().layer(
        tower::util::BoxCloneSyncService::new(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) })),
    );
    // The inner error is `BoxError`: like tower's `Timeout`, an `async` block awaiting it
    // cannot be proven `Send` (rust-lang/rust#64552); spawning the `oneshot` future works.
    assert_eq!(tokio::spawn(svc.oneshot(5)).await.unwrap().unwrap(), 5);
    let keyed = CircuitBreakerLayer::builder().keyed::<u32, _, _>(Parity).build().unwrap();
    let svc = keyed.layer(service_fn(|x: u32| async move { Ok::<_, io::Error>(x) }));
    assert_eq!(tokio::spawn(async move { svc.oneshot(3).await }).await.unwrap().unwrap(), 3);
}
