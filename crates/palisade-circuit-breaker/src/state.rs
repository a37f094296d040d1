//! [`CircuitState`], and the state word: `generation << 8 | state` in one atomic.
//!
//! Every transition bumps the generation, under a mutex that only transitions take; calls
//! read the word with one load. A call remembers the generation that admitted it and its
//! result counts only if the breaker is still in that generation: a call admitted while
//! closed that ends after the breaker opened says nothing about the new period.

use std::fmt;

/// The state of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass and their results are recorded.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A limited number of trial calls pass; their results close or re-open the breaker.
    HalfOpen,
    /// Set by hand: every call is rejected until another manual state.
    ForcedOpen,
    /// Set by hand: every call passes and nothing is recorded.
    Disabled,
    /// Set by hand: every call passes; results are recorded but never open the breaker.
    MetricsOnly,
}

impl CircuitState {
    /// A short stable name (`"closed"`, `"open"`, `"half_open"`, `"forced_open"`,
    /// `"disabled"`, `"metrics_only"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }

    /// A number per state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled,
    /// 5 metrics-only (the order of the `palisade_circuit_breaker_state` gauge's series).
    pub const fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
            Self::MetricsOnly => 5,
        }
    }

    const fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            4 => Self::Disabled,
            5 => Self::MetricsOnly,
            _ => Self::Closed,
        }
    }

    /// `true` for the states that reject calls: open, half-open (beyond its trials),
    /// forced open.
    pub const fn rejects(self) -> bool {
        matches!(self, Self::Open | Self::HalfOpen | Self::ForcedOpen)
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) const fn pack(gen: u64, state: CircuitState) -> u64 {
    (gen << 8) | state.code() as u64
}

pub(crate) const fn state_of(word: u64) -> CircuitState {
    CircuitState::from_code(word & 0xFF)
}

pub(crate) const fn gen_of(word: u64) -> u64 {
    word >> 8
}
