//! Events published by the timeout layer.

use std::time::Duration;

use palisade_core::event::{Event, FieldValue};

/// What happened inside a [`TimeoutLayer`](crate::TimeoutLayer).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutEvent {
    /// A call ran past its timeout: the inner future was dropped and the caller got
    /// [`TimedOut`](crate::error::TimedOut).
    TimedOut {
        /// The timeout the call was given.
        after: Duration,
    },
}

impl Event for TimeoutEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::TimedOut { .. } => "timed_out",
        }
    }

    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::TimedOut { after } => record("elapsed_ms", (*after).into()),
        }
    }
}
