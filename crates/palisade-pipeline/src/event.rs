//! [`PipelineEvent`]: what a pipeline tells its listeners.

use std::sync::Arc;

use palisade_core::event::{Event, FieldValue};
use tracing::Level;

/// What a pipeline tells its listeners (and `tracing`, target `palisade`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PipelineEvent {
    /// An item failed a stage.
    StageFailed {
        /// The stage's name.
        stage: Arc<str>,
        /// The item's position in the input stream, when it came through a stream.
        seq: Option<u64>,
        /// The stage's error, rendered.
        error: String,
    },
    /// A failed item went to the stage's dead-letter sink.
    DeadLettered {
        /// The stage's name.
        stage: Arc<str>,
        /// The item's position in the input stream, when it came through a stream.
        seq: Option<u64>,
    },
    /// A fail-fast stream stopped on an error.
    StoppedOnError {
        /// The stage that failed.
        stage: Arc<str>,
    },
}

impl Event for PipelineEvent {
    /// `stage`, `seq` (the item's sequence number, when it has one), `error`.
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::StageFailed { stage, seq, error } => {
                record("stage", stage.into());
                if let Some(seq) = seq {
                    record("seq", (*seq).into());
                }
                record("error", error.clone().into());
            }
            Self::DeadLettered { stage, seq } => {
                record("stage", stage.into());
                if let Some(seq) = seq {
                    record("seq", (*seq).into());
                }
            }
            Self::StoppedOnError { stage } => record("stage", stage.into()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::StageFailed { .. } => "stage_failed",
            Self::DeadLettered { .. } => "dead_lettered",
            Self::StoppedOnError { .. } => "stopped_on_error",
        }
    }

    fn level(&self) -> Level {
        match self {
            Self::StoppedOnError { .. } => Level::WARN,
            _ => Level::DEBUG,
        }
    }
}
