#![allow(dead_code)]

use palisade_bulkhead::{BulkheadFull, BulkheadFullReason, Overloaded};
use palisade_core::BoxError;

/// The bulkhead refusal reason inside `err`, if it is one.
pub(crate) fn reason(err: &BoxError) -> Option<BulkheadFullReason> {
    err.downcast_ref::<BulkheadFull>().map(BulkheadFull::reason)
}

pub(crate) fn is_overloaded(err: &BoxError) -> bool {
    err.is::<Overloaded>()
}
