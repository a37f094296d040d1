//! Every error a bulkhead or an adaptive limit returns. They are palisade-core's rejection
//! types, so one `err.is::<BulkheadFull>()` (or `palisade_core::rejection::find_rejection`)
//! works across crates, and palisade's HTTP and gRPC mappings answer them (503 /
//! `UNAVAILABLE`, `Retry-After` when set; `KeyMissing` 500 / `INTERNAL`).
//!
//! | error | from |
//! |---|---|
//! | [`BulkheadFull`] ([`BulkheadFullReason`]) | a bulkhead with no permit for the call: none free and no wait allowed, queue full, or wait timed out |
//! | [`Overloaded`] | an adaptive limit over its limit; any layer with `shed_when_inner_not_ready` while the inner service is not ready |
//! | [`KeySetFull`] | a keyed bulkhead whose `max_keys` keys are all in use, for a new key |
//! | [`KeyMissing`] | a keyed bulkhead with `Unkeyed::Reject` (the default), for a request without a key |
//! | [`ConfigError`] | `build()`, `validate` and the handles' setters, for a bad setting |

pub use palisade_core::config::ConfigError;
pub use palisade_core::rejection::{BulkheadFull, BulkheadFullReason, KeyMissing, KeySetFull, Overloaded};
