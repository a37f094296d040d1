#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4: a rejection whose retry delay is as long as a `Duration` can be (a
//! configured `Duration::MAX`, a hand-built rejection) becomes a response without
//! overflowing: `Retry-After` saturates at `u64::MAX` seconds (in a debug build the
//! ceiling `as_secs() + 1` panicked, in a release build it wrapped to `Retry-After: 0`:
//! "retry at once").

use std::time::Duration;

use palisade_core::rejection::{BulkheadFull, BulkheadFullReason, Overloaded};
use palisade_core::respond::http_response_for;
use palisade_core::BoxError;

#[allow(clippy::needless_pass_by_value)] // called with `.into()` at each site
fn retry_after_of(err: BoxError) -> String {
    let res: http::Response<()> = http_response_for(&err);
    res.headers()[http::header::RETRY_AFTER].to_str().unwrap().to_owned()
}

#[test]
fn a_maximal_retry_after_saturates_instead_of_overflowing() {
    let max = u64::MAX.to_string();
    assert_eq!(retry_after_of(Overloaded::new("x").with_retry_after(Duration::MAX).into()), max);
    let just_over = Duration::new(u64::MAX, 1);
    assert_eq!(retry_after_of(Overloaded::new("x").with_retry_after(just_over).into()), max);
    let full = BulkheadFull::new("b", BulkheadFullReason::QueueFull).with_retry_after(Duration::MAX);
    assert_eq!(retry_after_of(full.into()), max);
    // Ordinary values still round up to whole seconds.
    assert_eq!(
        retry_after_of(Overloaded::new("x").with_retry_after(Duration::from_millis(1500)).into()),
        "2"
    );
    assert_eq!(retry_after_of(Overloaded::new("x").with_retry_after(Duration::from_secs(3)).into()), "3");
}
