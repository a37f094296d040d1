//! The algorithms: token bucket (GCRA), leaky bucket, sliding window log, sliding window
//! counter and fixed window, each one limiter's state for one key.
//!
//! All times are nanoseconds since the owning limiter's epoch (a `tokio::time::Instant`), so
//! every algorithm is testable with a paused clock and with plain numbers.
//!
//! One file per algorithm: [`gcra`] (token and leaky bucket), [`log`], [`counter`] and
//! [`fixed`] windows; [`cell`] picks one per [`Algorithm`].

use std::time::Duration;

mod cell;
mod counter;
mod fixed;
mod gcra;
mod log;
#[cfg(all(test, not(loom)))]
mod tests;

pub(crate) use cell::Cell;
pub(crate) use gcra::Padded;

/// Which algorithm a limit uses.
///
/// | algorithm | admits | memory per key | waits by |
/// |---|---|---|---|
/// | [`TokenBucket`](Self::TokenBucket) (default) | `burst` at once, then `limit / period` | one `u64`, lock-free | reserving a future slot |
/// | [`LeakyBucket`](Self::LeakyBucket) | one every `period / limit`, a queue holds the rest | one `u64`, lock-free | always queues (smooths) |
/// | [`SlidingWindowLog`](Self::SlidingWindowLog) | exactly `limit` in any window of `period` | one entry per admitted or booked request | booking the earliest time that fits |
/// | [`SlidingWindowCounter`](Self::SlidingWindowCounter) | about `limit` per sliding `period` | four integers, plus a count per window booked ahead (at most 64) | booking the earliest time that fits |
/// | [`FixedWindow`](Self::FixedWindow) | `limit` per calendar window of `period` | four integers, plus a count per window booked ahead | booking the first window with room (as Resilience4j's `AtomicRateLimiter` reserves from future cycles, counted per window) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize), serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Algorithm {
    /// Token bucket as GCRA (generic cell rate algorithm): one atomic "theoretical arrival
    /// time", updated with compare-and-swap. Bursts of up to the quota's burst.
    #[default]
    TokenBucket,
    /// Leaky bucket that smooths: admitted requests leave one every `period / limit`; up to
    /// `queue` requests wait for their turn, and a request that finds the queue full is
    /// rejected at once, with `retry_after` the time until a place frees. As a layer it
    /// always queues, whatever [`RateLimitConfig::when_full`](crate::RateLimitConfig::when_full) says
    /// (when it waits, up to `max_wait`). The
    /// direct [`RateLimiter::check`](crate::RateLimiter::check) and `try_acquire` admit only
    /// a request that may leave now (their caller proceeds at once), so a weight above 1
    /// is [`Denied::CostExceedsCapacity`](crate::Denied::CostExceedsCapacity) there; in general a weight that could not leave
    /// within the wait allowed (the queue, or `max_wait` if shorter) even from an empty
    /// bucket is `CostExceedsCapacity`, never a `retry_after` that would not be kept.
    /// [`RateLimiter::reserve`](crate::RateLimiter::reserve) takes a queue place and says
    /// when to leave. Among several tiers of a layer that apply to a request, a request
    /// passes only when every tier admits it at once or within the wait (see the crate
    /// docs, *Refuse or wait*): in reject mode a leaky tier there refuses what it would
    /// queue (with the time it lets the request leave at once), and a weight above 1, which
    /// never leaves at once, is `CostExceedsCapacity` (capacity 1) in either mode.
    LeakyBucket {
        /// Requests that may wait for their departure slot.
        queue: u32,
    },
    /// Sliding window log: the exact count of requests in the last `period` (keeps one
    /// timestamp per admitted request, so memory grows with `limit`, which is therefore at
    /// most [`Quota::MAX_LOG_LIMIT`](crate::Quota::MAX_LOG_LIMIT)).
    SlidingWindowLog,
    /// Sliding window counter: two fixed windows, the previous one weighted by how much of
    /// it still overlaps the sliding window. Approximate, O(1) memory.
    SlidingWindowCounter,
    /// Fixed window: `limit` per window of `period` aligned to the limiter's start. Allows
    /// up to twice the limit across a window boundary; here for parity.
    FixedWindow,
}

impl Algorithm {
    /// A short stable name (`"token_bucket"`, `"leaky_bucket"`, …).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::TokenBucket => "token_bucket",
            Self::LeakyBucket { .. } => "leaky_bucket",
            Self::SlidingWindowLog => "sliding_window_log",
            Self::SlidingWindowCounter => "sliding_window_counter",
            Self::FixedWindow => "fixed_window",
        }
    }
}

/// What a limit holds for one key right now (from the [handle](crate::RateLimitHandle) or a
/// limiter's `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The most the limit admits at once (burst, queue + 1, or window limit).
    pub capacity: u32,
    /// What could be admitted now (tokens, free queue places, room left in the window).
    pub remaining: u32,
    /// Time until the limit is back to full capacity.
    pub reset_after: Duration,
    /// Requests admitted and waiting for their slot (leaky bucket; 0 otherwise).
    pub queued: u32,
}

impl Status {
    /// Capacity used now: for windows, the (weighted) count in the window.
    pub fn used(&self) -> u32 {
        self.capacity.saturating_sub(self.remaining)
    }
}

/// An admission: when it may proceed and what undoing it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admit {
    /// Nanoseconds (limiter time) at which the request may go; `<= now` means at once.
    pub(crate) ready_at: u64,
    /// Algorithm data for a refund (window index, log timestamp; a GCRA's TAT after it).
    pub(crate) token: u64,
    /// A GCRA's total of credits given back before this admission (see `Gcra::refund`);
    /// for the fixed window and the sliding counter, the changes of period before it (see
    /// `Windowed::periods`); 0 for the log.
    pub(crate) mark: u64,
}

pub(super) fn dur(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}
