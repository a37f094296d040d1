//! The error a breaker returns when it refuses a call.
//!
//! A rejected call never reaches the inner service; its response future resolves at once to
//! a [`CircuitOpen`] boxed as [`BoxError`](palisade_core::BoxError), carrying the breaker's
//! name and the time until it lets a trial call through. Test for it with
//! `err.is::<CircuitOpen>()`, or with [`palisade_core::find_rejection`] through wrapping
//! errors.
//!
//! In half-open state with every trial slot taken, `retry_after` is zero (the trials may
//! decide any moment); in forced-open state it is the configured wait in open state.

pub use palisade_core::rejection::CircuitOpen;
