//! Events published by the chaos layer.

use std::time::Duration;

use palisade_core::event::{Event, FieldValue};

/// An injection made by a [`ChaosLayer`](crate::ChaosLayer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChaosEvent {
    /// The call was answered with an injected error.
    FaultInjected,
    /// The call was answered with a substitute response.
    OutcomeInjected,
    /// The call was delayed.
    LatencyInjected {
        /// How long.
        delay: Duration,
    },
    /// The call will never be answered (until its future is dropped).
    HangInjected,
}

impl Event for ChaosEvent {
    /// `delay_ms` (latency injected).
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        if let Self::LatencyInjected { delay } = self {
            record("delay_ms", (*delay).into());
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::FaultInjected => "fault_injected",
            Self::OutcomeInjected => "outcome_injected",
            Self::LatencyInjected { .. } => "latency_injected",
            Self::HangInjected => "hang_injected",
        }
    }
}
