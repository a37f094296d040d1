#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4: a key function (or a tier's predicate) that panics inside `call`, after
//! an earlier tier admitted the request, gives that admission back: the request never ran,
//! so it must not spend a later caller's quota (nor, in wait mode, keep a booked slot that
//! makes later callers wait for nobody).

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use palisade_core::WhenFull;
use palisade_rate_limit::{Quota, RateLimitLayer, Tier};
use support::Echo;
use tower::{Layer, Service, ServiceExt};

/// Key 0 is poison: the key function panics on it.
#[allow(clippy::trivially_copy_pass_by_ref, clippy::unnecessary_wraps)] // a key function's shape
fn key(req: &u32) -> Option<u32> {
    assert!(*req != 0, "key function panicked");
    Some(*req)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_key_function_in_a_later_tier_spends_nothing_in_earlier_ones() {
    for when_full in [WhenFull::Refuse, WhenFull::wait(Duration::from_secs(3600))] {
        // One request an hour for everybody, then ten per key.
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_hour(1).burst(1))
            .tier(Tier::keyed(Quota::per_hour(10), key))
            .when_full(when_full)
            .build()
            .unwrap();
        let mut svc = layer.layer(Echo);
        svc.ready().await.unwrap();
        let panicked = catch_unwind(AssertUnwindSafe(|| drop(svc.call(0))));
        assert!(panicked.is_err(), "the key function's panic reaches the caller");
        // The global tier's only token was given back: the next request passes at once.
        let answer = tokio::time::timeout(Duration::from_secs(1), layer.layer(Echo).oneshot(7)).await;
        assert_eq!(answer.expect("not kept waiting for a slot nobody uses").unwrap(), 7, "{when_full:?}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_tier_predicate_spends_nothing_in_earlier_tiers() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1).burst(1))
        .tier(Tier::new(Quota::per_hour(10)).when(|r: &u32| {
            assert!(*r != 0, "predicate panicked");
            true
        }))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    svc.ready().await.unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(svc.call(0)))).is_err());
    assert_eq!(layer.layer(Echo).oneshot(3).await.unwrap(), 3);
}
