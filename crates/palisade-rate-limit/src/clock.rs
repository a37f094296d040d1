//! [`Clock`]: where a limit reads the time.
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

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Where a limit reads the time; see the [module docs](self).
#[derive(Clone, Default)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone, Default)]
enum Kind {
    #[default]
    Tokio,
    #[cfg(feature = "quanta")]
    Quanta(quanta::Clock),
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Tokio => f.write_str("Clock::tokio"),
            #[cfg(feature = "quanta")]
            Kind::Quanta(_) => f.write_str("Clock::quanta"),
        }
    }
}

impl Clock {
    /// tokio's clock (the default): honours a paused test clock.
    pub fn tokio() -> Self {
        Self { kind: Kind::Tokio }
    }

    /// The CPU's time-stamp counter through `quanta` (feature `quanta`): the fast clock.
    #[cfg(feature = "quanta")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
    pub fn quanta() -> Self {
        Self::from_quanta(quanta::Clock::new())
    }

    /// A given `quanta` clock, e.g. `quanta::Clock::mock()` in tests (feature `quanta`).
    #[cfg(feature = "quanta")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
    pub fn from_quanta(clock: quanta::Clock) -> Self {
        Self { kind: Kind::Quanta(clock) }
    }

    /// The time base of one limiter, starting now.
    pub(crate) fn epoch(&self) -> Epoch {
        let origin = Instant::now();
        let source = match &self.kind {
            Kind::Tokio => Source::Tokio,
            #[cfg(feature = "quanta")]
            Kind::Quanta(clock) => Source::Quanta { origin: clock.raw(), clock: clock.clone() },
        };
        Epoch { origin, source }
    }
}

/// A limiter's time base: nanoseconds since it started, read from its clock, and the
/// matching tokio instants (to sleep until a slot).
#[derive(Clone)]
pub(crate) struct Epoch {
    origin: Instant,
    source: Source,
}

#[derive(Clone)]
enum Source {
    Tokio,
    #[cfg(feature = "quanta")]
    Quanta {
        clock: quanta::Clock,
        origin: u64,
    },
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Epoch").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Epoch {
    /// Nanoseconds since the start, now.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match &self.source {
            Source::Tokio => self.nanos(Instant::now()),
            #[cfg(feature = "quanta")]
            Source::Quanta { clock, origin } => clock.delta_as_nanos(*origin, clock.raw()),
        }
    }

    /// Now, as a tokio instant.
    #[inline]
    pub(crate) fn now_instant(&self) -> Instant {
        match &self.source {
            Source::Tokio => Instant::now(),
            #[cfg(feature = "quanta")]
            Source::Quanta { .. } => self.instant(self.now()),
        }
    }

    /// Nanoseconds since the start at the tokio instant `at` (0 before the start).
    #[inline]
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos()))
    }

    /// The tokio instant `nanos` after the start (saturating about thirty years ahead).
    #[inline]
    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        palisade_core::time::deadline_after(self.origin, Duration::from_nanos(nanos))
    }
}
