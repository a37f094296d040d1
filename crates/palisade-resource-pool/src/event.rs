//! [`ResourcePoolEvent`]: what a resource pool publishes to its listeners.

use std::time::Duration;

use palisade_core::event::{Event, FieldValue};

/// Why a resource was thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestroyReason {
    /// It failed its recycle check.
    Broken,
    /// It sat idle longer than `idle_timeout`.
    Idle,
    /// The pool was closed.
    Closed,
    /// The holder threw it away with [`Pooled::destroy`](crate::Pooled::destroy).
    Discarded,
}

/// What a [`ResourcePool`](crate::ResourcePool) publishes to its listeners (and to `tracing`, target `palisade`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ResourcePoolEvent {
    /// A resource was created; `total` now exist.
    Created {
        /// Resources that exist now.
        total: usize,
    },
    /// A resource was destroyed.
    Destroyed {
        /// Why.
        reason: DestroyReason,
        /// Resources that exist now.
        total: usize,
    },
    /// `create` failed (an error, a panic, or no answer within
    /// [`create_timeout`](crate::ResourcePoolConfig::create_timeout)); the caller of
    /// `acquire` or [`fill`](crate::ResourcePool::fill) gets the error, the background
    /// refill logs it.
    CreateFailed {
        /// The error's message.
        error: String,
    },
    /// An `acquire` waited as long as [`WhenFull::Wait`](palisade_core::when_full::WhenFull::Wait)'s
    /// `max_wait` allows.
    AcquireTimedOut {
        /// The bound.
        after: Duration,
    },
}

impl Event for ResourcePoolEvent {
    /// `count` (resources after the change), `reason` (`broken`, `idle`, `closed`,
    /// `discarded`), `error`, `elapsed_ms` (how long the caller waited before timing out).
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::Created { total } => record("count", (*total).into()),
            Self::Destroyed { reason, total } => {
                record(
                    "reason",
                    match reason {
                        DestroyReason::Broken => "broken",
                        DestroyReason::Idle => "idle",
                        DestroyReason::Closed => "closed",
                        DestroyReason::Discarded => "discarded",
                    }
                    .into(),
                );
                record("count", (*total).into());
            }
            Self::CreateFailed { error } => record("error", error.clone().into()),
            Self::AcquireTimedOut { after } => record("elapsed_ms", (*after).into()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Destroyed { .. } => "destroyed",
            Self::CreateFailed { .. } => "create_failed",
            Self::AcquireTimedOut { .. } => "acquire_timed_out",
        }
    }

    fn level(&self) -> tracing::Level {
        match self {
            Self::CreateFailed { .. } => tracing::Level::WARN,
            Self::Destroyed { reason: DestroyReason::Broken, .. } => tracing::Level::INFO,
            _ => tracing::Level::DEBUG,
        }
    }
}
