//! [`Clock`]: where a limit reads the time (palisade-core's clock, shared with the breaker).
//!
//! The default is tokio's clock, so tests that pause time (`start_paused`, `advance`)
//! control every limit. With the `quanta` feature, [`Clock::quanta`] reads the CPU's
//! time-stamp counter through the [`quanta`](https://docs.rs/quanta) crate, as governor
//! does: a clock read then costs a few nanoseconds instead of a system call's worth, but a
//! paused tokio clock no longer controls the limit (use [`Clock::from_quanta`] with
//! `quanta::Clock::mock()` in tests, and advance both clocks together).
//!
//! ```
//! use palisade_rate_limit::{Clock, Quota, RateLimiter};
//!
//! let limiter = RateLimiter::builder(Quota::per_second(100)).clock(Clock::tokio()).build().unwrap();
//! assert!(limiter.check().is_ok());
//! ```

pub use palisade_core::clock::Clock;
pub(crate) use palisade_core::clock::Epoch;
