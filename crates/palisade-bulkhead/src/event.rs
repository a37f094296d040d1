//! Events published by bulkheads and adaptive limits.

use std::time::Duration;

use palisade_core::event::{Event, EventBus, FieldValue};
use palisade_core::rejection::BulkheadFullReason;
use tracing::Level;

/// What a [`BulkheadLayer`](crate::BulkheadLayer) (or a keyed bulkhead) did with one call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// The call got a permit after waiting `wait` (zero when one was free).
    Acquired {
        /// Time spent in the wait queue.
        wait: Duration,
    },
    /// The call was refused for want of a permit ([`BulkheadFull`](crate::BulkheadFull)).
    Rejected {
        /// Why: queue full, wait timed out, or no permit with waiting disabled.
        reason: BulkheadFullReason,
    },
    /// The call was refused because the inner service was not ready
    /// ([`shed_when_inner_not_ready`](crate::BulkheadBuilder::shed_when_inner_not_ready), as
    /// tower's `LoadShed`): the caller got [`Overloaded`](crate::Overloaded). Kind
    /// `rejected`, reason `inner_not_ready`.
    InnerNotReady,
    /// A keyed bulkhead refused a new key because all its keys were in use: the caller got
    /// [`KeySetFull`](crate::KeySetFull). Kind `rejected`, reason `key_set_full`.
    KeySetFull {
        /// The keyed bulkhead's `max_keys`.
        capacity: usize,
    },
}

impl Event for BulkheadEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Acquired { .. } => "acquired",
            Self::Rejected { .. } | Self::InnerNotReady | Self::KeySetFull { .. } => "rejected",
        }
    }

    fn level(&self) -> Level {
        match self {
            Self::Acquired { .. } => Level::TRACE,
            Self::Rejected { .. } | Self::InnerNotReady | Self::KeySetFull { .. } => Level::DEBUG,
        }
    }

    /// `wait_ms` (acquired) or `reason` (`no_permit`, `queue_full`, `wait_timed_out`,
    /// `inner_not_ready`, `key_set_full` with `capacity`: the `reason` label of
    /// `palisade_bulkhead_rejected_total`): the structured `tracing` fields.
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::Acquired { wait } => record("wait_ms", (*wait).into()),
            Self::Rejected { reason } => record("reason", reason_str(*reason).into()),
            Self::InnerNotReady => record("reason", "inner_not_ready".into()),
            Self::KeySetFull { capacity } => {
                record("reason", "key_set_full".into());
                record("capacity", (*capacity).into());
            }
        }
    }
}

/// A refusal's reason as a stable snake-case word for logs.
fn reason_str(reason: BulkheadFullReason) -> &'static str {
    match reason {
        BulkheadFullReason::QueueFull => "queue_full",
        BulkheadFullReason::WaitTimedOut => "wait_timed_out",
        // `NoPermit` and any reason added later.
        _ => "no_permit",
    }
}

/// What an [`AdaptiveLimitLayer`](crate::AdaptiveLimitLayer) did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdaptiveLimitEvent {
    /// The call got a permit after waiting `wait` in the backlog (zero when one was free).
    Acquired {
        /// Time spent in the backlog.
        wait: Duration,
    },
    /// The call was shed: the limit was reached and the backlog was full, disabled or
    /// its wait ran out.
    Rejected {
        /// The call's partition, when partitions are configured and the call matched one.
        partition: Option<std::sync::Arc<str>>,
    },
    /// The algorithm moved the limit.
    LimitChanged {
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
    },
}

impl Event for AdaptiveLimitEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Acquired { .. } => "acquired",
            Self::Rejected { .. } => "rejected",
            Self::LimitChanged { .. } => "limit_changed",
        }
    }

    fn level(&self) -> Level {
        match self {
            Self::Acquired { .. } => Level::TRACE,
            Self::Rejected { .. } | Self::LimitChanged { .. } => Level::DEBUG,
        }
    }

    /// `wait_ms` (acquired), `partition` (rejected, when it had one), `from_limit` and
    /// `to_limit` (numbers; named apart from the breaker's `from`/`to` states so a log store
    /// keeps one type per field): the structured `tracing` fields.
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::Acquired { wait } => record("wait_ms", (*wait).into()),
            Self::Rejected { partition } => {
                if let Some(partition) = partition {
                    record("partition", partition.into());
                }
            }
            Self::LimitChanged { from, to } => {
                record("from_limit", (*from).into());
                record("to_limit", (*to).into());
            }
        }
    }
}

/// Publishes `event` on `bus`, containing a panicking listener: the panic is logged and
/// the machinery that published (a permit being released, a limit being moved) goes on.
/// Listeners after the panicking one miss this event.
pub(crate) fn publish<E: Event>(bus: &EventBus<E>, event: E) {
    let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bus.publish(event)));
    if delivered.is_err() {
        tracing::error!(
            target: "palisade",
            pattern = bus.pattern(),
            name = %bus.name(),
            "an event listener panicked; the panic was contained",
        );
    }
}
