//! Every error the breaker returns.
//!
//! A rejected call never reaches the inner service; its response future resolves at once to
//! a [`CircuitOpen`] boxed as [`BoxError`](palisade_core::BoxError), carrying the breaker's
//! name and the time until it lets a trial call through. Test for it with
//! `err.is::<CircuitOpen>()`, or with [`palisade_core::find_rejection`] through wrapping
//! errors.
//!
//! In half-open state with every trial slot taken, `retry_after` is the shorter of the last
//! open wait and the time left before the half-open period times out (never zero: a
//! `Retry-After: 0` would invite every client to hammer a recovering backend); in
//! forced-open state it is the configured wait in open state and
//! [`CircuitOpen::is_isolated`] is `true`. A keyed breaker's rejection carries the key
//! ([`CircuitOpen::key`]); a keyed layer whose key set is full of keys that still matter
//! refuses a new key with [`KeySetFull`], and a request without a key (by default) with
//! [`KeyMissing`]. A builder refuses invalid settings with [`ConfigError`].

pub use palisade_core::config::ConfigError;
pub use palisade_core::rejection::{CircuitOpen, KeyMissing, KeySetFull};
