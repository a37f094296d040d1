#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The rejection finder, through source chains.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use palisade_core::rejection::{
    find, find_rejection, BudgetExhausted, BulkheadFull, BulkheadFullReason, CircuitOpen, Closed,
    CostExceedsCapacity, KeyMissing, Overloaded, RateLimited, RejectionKind, Throttled, TimedOut,
};
use palisade_core::BoxError;

#[derive(Debug)]
struct Wrap(BoxError);

impl fmt::Display for Wrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}

impl Error for Wrap {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.0.as_ref())
    }
}

#[test]
fn every_kind_is_found_directly_and_through_two_wrappers() {
    let d = Duration::from_secs(3);
    let cases: Vec<(BoxError, RejectionKind, Option<Duration>)> = vec![
        (CircuitOpen::new("a", d).into(), RejectionKind::CircuitOpen, Some(d)),
        (RateLimited::new("a", d).into(), RejectionKind::RateLimited, Some(d)),
        (BulkheadFull::new("a", BulkheadFullReason::QueueFull).into(), RejectionKind::BulkheadFull, None),
        (Overloaded::new("a").with_retry_after(d).into(), RejectionKind::Overloaded, Some(d)),
        (TimedOut::new("a", d).into(), RejectionKind::TimedOut, None),
        (Throttled::new("a").into(), RejectionKind::Throttled, None),
        (BudgetExhausted::new("a").into(), RejectionKind::BudgetExhausted, None),
        (Closed::new("a").into(), RejectionKind::Closed, None),
        (CostExceedsCapacity::new("a", "per-user", 50, 10).into(), RejectionKind::CostExceedsCapacity, None),
        (KeyMissing::new("a").into(), RejectionKind::KeyMissing, None),
    ];
    for (err, kind, retry_after) in cases {
        let r = find_rejection(err.as_ref()).expect("direct");
        assert_eq!((r.kind(), r.retry_after(), r.layer_name()), (kind, retry_after, "a"));
        let wrapped: BoxError = Box::new(Wrap(Box::new(Wrap(err))));
        let r = find_rejection(wrapped.as_ref()).expect("through the chain");
        assert_eq!(r.kind(), kind);
        assert!(!r.to_string().is_empty());
    }
}

#[test]
fn other_errors_are_not_rejections() {
    let err: BoxError = Box::new(Wrap("plain".into()));
    assert!(find_rejection(err.as_ref()).is_none());
    assert!(find::<TimedOut>(err.as_ref()).is_none());
}

#[test]
fn find_concrete_type_and_fields() {
    let err: BoxError = Box::new(Wrap(BulkheadFull::new("db", BulkheadFullReason::WaitTimedOut).into()));
    let full = find::<BulkheadFull>(err.as_ref()).unwrap();
    assert_eq!(full.reason(), BulkheadFullReason::WaitTimedOut);
    assert_eq!(full.name(), "db");
    assert_eq!(full.to_string(), "bulkhead `db` is full: wait for a permit timed out");
}

#[test]
fn rejections_are_send_sync_static_errors() {
    fn check<T: Error + Send + Sync + 'static>() {}
    check::<CircuitOpen>();
    check::<RateLimited>();
    check::<BulkheadFull>();
    check::<Overloaded>();
    check::<TimedOut>();
    check::<Throttled>();
    check::<BudgetExhausted>();
    check::<Closed>();
    check::<CostExceedsCapacity>();
    check::<KeyMissing>();
    assert_eq!(RejectionKind::CircuitOpen.to_string(), "circuit_open");
}

#[test]
fn circuit_open_carries_the_key_and_says_when_it_was_isolated_by_hand() {
    let d = Duration::from_secs(3);
    let plain = CircuitOpen::new("upstream", d);
    assert_eq!((plain.key(), plain.is_isolated()), (None, false));
    assert_eq!(plain.to_string(), "circuit breaker `upstream` is open; retry after 3s");

    let keyed = CircuitOpen::new("upstream", d).with_key("a.example");
    assert_eq!(keyed.key(), Some("a.example"));
    assert!(keyed.to_string().contains("for key `a.example`"), "{keyed}");

    let isolated = CircuitOpen::new("upstream", d).with_isolated(true);
    assert!(isolated.is_isolated());
    assert!(isolated.to_string().contains("isolated"), "{isolated}");
    // Still a circuit-open rejection for every finder and classifier.
    let err: BoxError = isolated.into();
    assert_eq!(
        find_rejection(err.as_ref()).map(palisade_core::Rejection::kind),
        Some(RejectionKind::CircuitOpen)
    );
    assert!(err.is::<CircuitOpen>());
}

#[test]
fn key_missing_names_the_layer() {
    let err = KeyMissing::new("per-ip");
    assert_eq!(err.name(), "per-ip");
    assert_eq!(err.to_string(), "keyed layer `per-ip` got a request without a key");
    assert_eq!(RejectionKind::KeyMissing.as_str(), "key_missing");
    assert_eq!(RejectionKind::KeyMissing.to_string(), "key_missing");
    // A kind is named as its rejection type is.
    assert_eq!(RejectionKind::CostExceedsCapacity.as_str(), "cost_exceeds_capacity");
}
