#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 15.9: futures awaiting a fallback built from closures that return `BoxError` can be
//! spawned (rust-lang/rust#64552). These tests are compile tests first: before the closure
//! was erased, they did not build ("implementation of `From` is not general enough").

use std::io;

use palisade_core::{BoxError, DefaultClassifier};
use palisade_fallback::provider::FnProvider;
use palisade_fallback::{FallbackContext, FallbackLayer};
use tower::{service_fn, Layer, ServiceExt};

fn fallback_layer() -> FallbackLayer<DefaultClassifier, FnProvider<u32, u32>> {
    FallbackLayer::builder()
        .fallback_fn(|ctx: FallbackContext<u32, u32>| async move {
            if ctx.error().is_some() {
                Ok::<_, BoxError>(7)
            } else {
                Err::<u32, BoxError>("no cause".into())
            }
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_fallback_closure_returning_box_error_can_be_spawned() {
    let svc = fallback_layer().layer(service_fn(|x: u32| async move {
        if x == 0 {
            Err::<u32, _>(io::Error::other("zero"))
        } else {
            Ok(x)
        }
    }));
    let task = tokio::spawn(svc.clone().oneshot(0));
    assert_eq!(task.await.unwrap().unwrap(), 7);
    let task = tokio::spawn(async move { svc.oneshot(3).await });
    assert_eq!(task.await.unwrap().unwrap(), 3);
}

#[tokio::test]
async fn a_fallback_with_request_returning_box_error_can_be_spawned_in_a_join_set() {
    let layer = FallbackLayer::builder()
        .fallback_fn_with_request(|ctx: FallbackContext<u32, u32>| async move {
            Ok::<_, BoxError>(ctx.request().copied().unwrap_or_default() + 100)
        })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(io::Error::other("down")) }));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..3 {
        let svc = svc.clone();
        set.spawn(async move { svc.oneshot(i).await });
    }
    let mut got = Vec::new();
    while let Some(r) = set.join_next().await {
        got.push(r.unwrap().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, vec![100, 101, 102]);
}

/// A library can name and store the stack: the provider's type no longer holds the closure.
struct Client<S> {
    svc: palisade_fallback::Fallback<S, DefaultClassifier, FnProvider<u32, u32>>,
}

#[tokio::test]
async fn a_stored_fallback_stack_can_be_spawned() {
    let inner = tower::util::BoxCloneSyncService::new(service_fn(|x: u32| async move {
        if x == 0 {
            Err::<u32, BoxError>("zero".into())
        } else {
            Ok(x)
        }
    }));
    let client = Client { svc: fallback_layer().layer(inner) };
    // The inner service's own error is `BoxError`: like tower's `Timeout`, any layer whose
    // impl says `S::Error: Into<BoxError>` then hits rust-lang/rust#64552 inside an `async`
    // block; spawning the `oneshot` future itself works (one of the documented workarounds).
    let task = tokio::spawn(client.svc.clone().oneshot(0));
    assert_eq!(task.await.unwrap().unwrap(), 7);
}
