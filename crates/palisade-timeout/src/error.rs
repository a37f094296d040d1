//! The error a timeout returns.
//!
//! A call that runs past its timeout is answered with palisade's [`TimedOut`] rejection (the
//! role of tower's `timeout::error::Elapsed`), carrying the layer's name and the timeout, so
//! that `palisade_core::rejection::find_rejection` finds it through any error chain and
//! `palisade_core::respond` turns it into HTTP 504 or gRPC DEADLINE_EXCEEDED.

pub use palisade_core::rejection::TimedOut;
