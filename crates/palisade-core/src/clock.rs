//! [`Clock`]: where palisade's limits and breakers read the time.
//!
//! The default is tokio's clock, so tests that pause time (`start_paused`, `advance`)
//! control every limit and breaker. With the `quanta` feature, [`Clock::quanta`] reads the
//! CPU's time-stamp counter through the [`quanta`](https://docs.rs/quanta) crate, as governor
//! does: a clock read then costs a few nanoseconds instead of a system call's worth, but a
//! paused tokio clock no longer controls the layer (use [`Clock::from_quanta`] with
//! `quanta::Clock::mock()` in tests, and advance both clocks together).
//!
//! palisade-rate-limit and palisade-circuit-breaker re-export [`Clock`] and take it on their
//! builders (`.clock(Clock::quanta())`).
//!
//! ```
//! use palisade_core::clock::Clock;
//!
//! let clock = Clock::tokio(); // the default
//! # let _ = clock;
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Where a limit or breaker reads the time; see the [module docs](self).
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

    /// The time base of one limiter or breaker, starting now (for palisade's pattern crates).
    #[doc(hidden)]
    pub fn epoch(&self) -> Epoch {
        let origin = Instant::now();
        let source = match &self.kind {
            Kind::Tokio => Source::Tokio,
            #[cfg(feature = "quanta")]
            Kind::Quanta(clock) => Source::Quanta { origin: clock.raw(), clock: clock.clone() },
        };
        Epoch { origin, source }
    }
}

/// A time base: nanoseconds since it started, read from its clock, and the matching tokio
/// instants (to sleep until a slot, to arm a timer). For palisade's pattern crates.
#[doc(hidden)]
#[derive(Clone)]
pub struct Epoch {
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
    pub fn now(&self) -> u64 {
        match &self.source {
            Source::Tokio => self.nanos(Instant::now()),
            #[cfg(feature = "quanta")]
            Source::Quanta { clock, origin } => clock.delta_as_nanos(*origin, clock.raw()),
        }
    }

    /// Nanoseconds since the start at the end of a call measured at `end` on tokio's clock
    /// (read again from a quanta clock, whose readings do not mix with tokio's).
    #[inline]
    pub fn at_end(&self, end: Option<Instant>) -> u64 {
        match (&self.source, end) {
            (Source::Tokio, Some(end)) => self.nanos(end),
            _ => self.now(),
        }
    }

    /// Now, as a tokio instant.
    #[inline]
    pub fn now_instant(&self) -> Instant {
        match &self.source {
            Source::Tokio => Instant::now(),
            #[cfg(feature = "quanta")]
            Source::Quanta { .. } => self.instant(self.now()),
        }
    }

    /// Nanoseconds since the start at the tokio instant `at` (0 before the start).
    #[inline]
    pub fn nanos(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos()))
    }

    /// The tokio instant `nanos` after the start (saturating about thirty years ahead).
    #[inline]
    pub fn instant(&self, nanos: u64) -> Instant {
        crate::time::deadline_after(self.origin, Duration::from_nanos(nanos))
    }
}
