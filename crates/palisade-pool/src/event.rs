//! Events published by a [`Pool`](crate::Pool).

use std::sync::Arc;
use std::time::Duration;

use palisade_core::event::{Event, FieldValue};

/// Why a member was added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScaleUpReason {
    /// Fewer than `min_size` members existed.
    Minimum,
    /// Utilisation (in-flight / capacity) reached `scale_up_utilisation`.
    Utilisation,
    /// `scale_up_queue` requests were waiting with no member free.
    Queue,
    /// An evicted member was replaced.
    Replacement,
    /// An operator asked for more members ([`PoolHandle::scale_to`](crate::PoolHandle::scale_to),
    /// [`scale_up`](crate::PoolHandle::scale_up)).
    Operator,
    /// A custom [`ScalingPolicy`](crate::scaling::ScalingPolicy) asked for it.
    Policy,
}

/// Why a member was retired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScaleDownReason {
    /// Utilisation stayed below `scale_down_utilisation` for `scale_down_after`.
    LowUtilisation,
    /// The member was idle longer than `idle_timeout`.
    Idle,
    /// An operator asked for fewer members ([`PoolHandle::scale_to`](crate::PoolHandle::scale_to),
    /// [`scale_down`](crate::PoolHandle::scale_down)).
    Operator,
    /// A custom [`ScalingPolicy`](crate::scaling::ScalingPolicy) asked for it.
    Policy,
}

/// Why a member was evicted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvictReason {
    /// Its `poll_ready` returned this error.
    NotReady(Arc<str>),
    /// This many calls in a row were classified as failures.
    ConsecutiveFailures(u32),
    /// It failed its periodic health check.
    HealthCheck,
    /// Its `poll_ready`, `call`, response future or health check panicked (the message);
    /// the request involved failed with [`Panicked`](crate::error::Panicked).
    Panicked(Arc<str>),
}

/// What a [`Pool`](crate::Pool) publishes to its listeners (and to `tracing`,
/// target `palisade`, pattern `pool`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A member was made and joined the pool.
    ScaledUp {
        /// The new member's id.
        member: u64,
        /// Members now.
        members: usize,
        /// Why it was made.
        reason: ScaleUpReason,
    },
    /// A member was retired.
    ScaledDown {
        /// The retired member's id.
        member: u64,
        /// Members now.
        members: usize,
        /// Why.
        reason: ScaleDownReason,
    },
    /// An unhealthy member was evicted (a replacement is made).
    Evicted {
        /// The evicted member's id.
        member: u64,
        /// Members now.
        members: usize,
        /// Why.
        reason: EvictReason,
    },
    /// Making a member failed; the next attempt is `retry_in` away.
    MakeFailed {
        /// Failures in a row.
        attempt: u32,
        /// Delay before the next attempt.
        retry_in: Duration,
        /// The error's message.
        error: Arc<str>,
    },
    /// A call finished on a member (published only when a listener or `tracing` at TRACE
    /// level would see it; `tracing` level TRACE).
    Completed {
        /// The member that served it.
        member: u64,
        /// From dispatch to the member until the response.
        duration: Duration,
        /// The classifier judged it a failure (or the member panicked).
        failed: bool,
    },
    /// Shutdown began: no new requests are accepted.
    ShutdownStarted,
    /// Shutdown finished and the members were dropped.
    ShutdownFinished {
        /// Whether every queued and in-flight request finished before the deadline.
        drained: bool,
    },
}

impl Event for PoolEvent {
    /// `member`, `count` (members after the change), `reason` (why it scaled or evicted),
    /// `attempt`, `delay_ms` and `error` (a failed make), `elapsed_ms` and `outcome` (a
    /// completed call: `success` or `failure`), `outcome` `drained` or `abandoned` (shutdown).
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::ScaledUp { member, members, reason } => {
                record("member", (*member).into());
                record("count", (*members).into());
                record(
                    "reason",
                    match reason {
                        ScaleUpReason::Minimum => "minimum",
                        ScaleUpReason::Utilisation => "utilisation",
                        ScaleUpReason::Queue => "queue",
                        ScaleUpReason::Replacement => "replacement",
                        ScaleUpReason::Operator => "operator",
                        ScaleUpReason::Policy => "policy",
                    }
                    .into(),
                );
            }
            Self::ScaledDown { member, members, reason } => {
                record("member", (*member).into());
                record("count", (*members).into());
                record(
                    "reason",
                    match reason {
                        ScaleDownReason::LowUtilisation => "low_utilisation",
                        ScaleDownReason::Idle => "idle",
                        ScaleDownReason::Operator => "operator",
                        ScaleDownReason::Policy => "policy",
                    }
                    .into(),
                );
            }
            Self::Evicted { member, members, reason } => {
                record("member", (*member).into());
                record("count", (*members).into());
                match reason {
                    EvictReason::NotReady(error) => {
                        record("reason", "not_ready".into());
                        record("error", error.into());
                    }
                    EvictReason::ConsecutiveFailures(n) => {
                        record("reason", "consecutive_failures".into());
                        record("failures", (*n).into());
                    }
                    EvictReason::HealthCheck => record("reason", "health_check".into()),
                    EvictReason::Panicked(error) => {
                        record("reason", "panicked".into());
                        record("error", error.into());
                    }
                }
            }
            Self::MakeFailed { attempt, retry_in, error } => {
                record("attempt", (*attempt).into());
                record("delay_ms", (*retry_in).into());
                record("error", error.into());
            }
            Self::Completed { member, duration, failed } => {
                record("member", (*member).into());
                record("elapsed_ms", (*duration).into());
                record("outcome", if *failed { "failure" } else { "success" }.into());
            }
            Self::ShutdownStarted => {}
            Self::ShutdownFinished { drained } => {
                record("outcome", if *drained { "drained" } else { "abandoned" }.into());
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::ScaledUp { .. } => "scaled_up",
            Self::ScaledDown { .. } => "scaled_down",
            Self::Evicted { .. } => "evicted",
            Self::MakeFailed { .. } => "make_failed",
            Self::Completed { .. } => "completed",
            Self::ShutdownStarted => "shutdown_started",
            Self::ShutdownFinished { .. } => "shutdown_finished",
        }
    }

    fn level(&self) -> tracing::Level {
        match self {
            Self::Evicted { .. } | Self::MakeFailed { .. } => tracing::Level::WARN,
            Self::Completed { .. } => tracing::Level::TRACE,
            _ => tracing::Level::INFO,
        }
    }
}
