//! [`Clock`]: where a breaker reads the time (palisade-core's clock, shared with the rate
//! limiter).
//!
//! The default is tokio's clock, so tests that pause time (`start_paused`, `advance`)
//! control every breaker. With the `quanta` feature, [`Clock::quanta`] reads the CPU's
//! time-stamp counter through the [`quanta`](https://docs.rs/quanta) crate (as governor
//! does): a time window's one clock read per call then costs a few nanoseconds instead of a
//! `clock_gettime`, but a paused tokio clock no longer controls the breaker (use
//! [`Clock::from_quanta`] with `quanta::Clock::mock()` in tests). Call durations (slow calls,
//! `classify_timed`) are always measured on tokio's clock.
//!
//! ```
//! use palisade_circuit_breaker::{CircuitBreakerLayer, Clock};
//!
//! let layer = CircuitBreakerLayer::builder().clock(Clock::tokio()).build()?;
//! # let _ = layer;
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```

pub use palisade_core::clock::Clock;
pub(crate) use palisade_core::clock::Epoch;
