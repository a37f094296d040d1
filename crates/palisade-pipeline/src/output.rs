//! What a pipeline returns for one item, and in which order a stream returns them.

use std::sync::Arc;

use crate::error::StageError;

/// What became of an item in a pipeline with filter stages: it came out, or a filter dropped
/// it. A filtered item is not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Processed<T> {
    /// The item went through every stage.
    Item(T),
    /// A filter stage dropped the item.
    Filtered(Filtered),
}

impl<T> Processed<T> {
    /// The item, or `None` if it was filtered.
    pub fn into_item(self) -> Option<T> {
        match self {
            Self::Item(t) => Some(t),
            Self::Filtered(_) => None,
        }
    }

    /// Whether a filter dropped the item.
    pub fn is_filtered(&self) -> bool {
        matches!(self, Self::Filtered(_))
    }
}

/// A filter stage dropped an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filtered {
    pub(crate) stage: Arc<str>,
}

impl Filtered {
    /// The filter stage that dropped the item.
    pub fn stage(&self) -> &str {
        &self.stage
    }
}

/// Whether a pipeline has filter stages, which decides its response type: a pipeline
/// without filters answers `Out`, one with filters answers [`Processed<Out>`].
pub trait FilterMode: Send + Sync + 'static {
    /// The pipeline's response for an `Out`.
    type Response<T>;
    #[doc(hidden)]
    fn finish<T>(processed: Processed<T>) -> Result<Self::Response<T>, StageError>;
}

/// A pipeline without filter stages.
#[derive(Clone, Copy, Debug)]
pub struct NoFilter;

/// A pipeline with at least one filter stage.
#[derive(Clone, Copy, Debug)]
pub struct WithFilter;

impl FilterMode for NoFilter {
    type Response<T> = T;

    #[inline]
    fn finish<T>(processed: Processed<T>) -> Result<T, StageError> {
        match processed {
            Processed::Item(t) => Ok(t),
            // Only filter stages filter, and adding one switches the mode to `WithFilter`.
            Processed::Filtered(f) => Err(StageError::new(
                f.stage,
                0,
                None,
                "item filtered by a pipeline without filter stages".into(),
            )),
        }
    }
}

impl FilterMode for WithFilter {
    type Response<T> = Processed<T>;

    #[inline]
    fn finish<T>(processed: Processed<T>) -> Result<Processed<T>, StageError> {
        Ok(processed)
    }
}

/// The order in which a stream's results come out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// In input order: a slow item holds back the ones behind it (up to each stage's
    /// concurrency).
    #[default]
    Preserved,
    /// As each item completes.
    Completion,
}

/// Where a stream's stages run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Execution {
    /// Each stage on its own tokio task, owned by the output stream (aborted when it is
    /// dropped). Stages progress while the consumer is busy, and in parallel on a
    /// multi-threaded runtime.
    #[default]
    Tasks,
    /// Every stage inside the output stream itself, polled by the consumer's task: no task
    /// and no hand-off between tasks (faster when stages are cheap), but stages only progress
    /// while the consumer polls, on one thread.
    Inline,
}
