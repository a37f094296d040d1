//! Errors: a failed stage ([`StageError`]), a dead letter ([`DeadLetter`]), a failed
//! fan-out ([`FanOutError`]), a failed batch item ([`BatchError`]), a supervised service called
//! before it was ready ([`NotReady`]), and user code that
//! panicked ([`Panicked`]).
//!
//! User code that panics while a stream or a batch works on one item — the stage's
//! `poll_ready`, `call` or response future (or its `Drop`), the item's `Clone` (for
//! [kept items](crate::PipelineBuilder::keep_failed_items)), the
//! [dead-letter sink](crate::PipelineBuilder::dead_letter), the input stream itself, or a
//! [`Batch`](crate::Batch)'s service — is caught: in a stream the item fails with a
//! [`StageError`] whose [`error`](StageError::error) is palisade-core's [`Panicked`]
//! (component `"stage"`, the stage's name, the site: `"poll_ready"`, `"call"`,
//! `"response"`, `"drop"`, `"clone"`, `"dead_letter"`, `"input"`), and the stream goes on
//! with the next item (a panicking input stream ends the input, after this error, at stage
//! `"input"`); find it with `err.error().is::<Panicked>()`. In a batch the item's result is
//! [`BatchError::Panicked`] (component `"service"`, name `"batch"`).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

pub use palisade_core::panic::Panicked;
use palisade_core::BoxError;

/// An item failed one stage of a pipeline.
///
/// It names the stage (its name and its position, counted from zero), the position of the item
/// in the input stream when it came from [`process_stream`](crate::PipelineService::process_stream),
/// and the stage's error as its [`source`](std::error::Error::source). When the stage keeps failed
/// items ([`keep_failed_items`](crate::PipelineBuilder::keep_failed_items)), the item that
/// failed is inside: take it back with [`item`](Self::item) or [`into_item`](Self::into_item).
pub struct StageError {
    inner: Box<Inner>,
}

struct Inner {
    stage: Arc<str>,
    position: usize,
    seq: Option<u64>,
    source: BoxError,
    item: Option<Box<dyn Any + Send + Sync>>,
    dead_lettered: bool,
}

impl StageError {
    pub(crate) fn new(stage: Arc<str>, position: usize, seq: Option<u64>, source: BoxError) -> Self {
        Self { inner: Box::new(Inner { stage, position, seq, source, item: None, dead_lettered: false }) }
    }

    pub(crate) fn with_item(mut self, item: Option<Box<dyn Any + Send + Sync>>) -> Self {
        self.inner.item = item;
        self
    }

    pub(crate) fn dead_lettered(mut self) -> Self {
        self.inner.dead_lettered = true;
        self
    }

    /// The name of the stage that failed.
    pub fn stage(&self) -> &str {
        &self.inner.stage
    }

    /// The position of the stage that failed in its pipeline, counted from zero.
    pub fn position(&self) -> usize {
        self.inner.position
    }

    /// The position of the failed item in the input stream (counted from zero), when the item
    /// came through [`process_stream`](crate::PipelineService::process_stream).
    pub fn seq(&self) -> Option<u64> {
        self.inner.seq
    }

    /// The error the stage returned.
    pub fn error(&self) -> &BoxError {
        &self.inner.source
    }

    /// The stage's error, by value.
    pub fn into_error(self) -> BoxError {
        self.inner.source
    }

    /// Whether the failed item went to the stage's dead-letter sink (calls through the
    /// pipeline as a `Service`; a stream leaves dead-lettered items out).
    pub fn is_dead_lettered(&self) -> bool {
        self.inner.dead_lettered
    }

    /// The item that failed the stage, if the stage keeps failed items and `T` is the stage's
    /// input type.
    pub fn item<T: 'static>(&self) -> Option<&T> {
        self.inner.item.as_ref().and_then(|i| i.downcast_ref::<T>())
    }

    /// Takes the failed item out, if the stage keeps failed items and `T` is the stage's
    /// input type; otherwise gives the error back.
    pub fn into_item<T: 'static>(mut self) -> Result<T, Self> {
        match self.inner.item.take().map(<Box<dyn Any + Send + Sync>>::downcast::<T>) {
            Some(Ok(item)) => Ok(*item),
            Some(Err(other)) => {
                self.inner.item = Some(other);
                Err(self)
            }
            None => Err(self),
        }
    }
}

impl fmt::Debug for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageError")
            .field("stage", &self.inner.stage)
            .field("position", &self.inner.position)
            .field("seq", &self.inner.seq)
            .field("source", &self.inner.source)
            .field("has_item", &self.inner.item.is_some())
            .field("dead_lettered", &self.inner.dead_lettered)
            .finish()
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.seq {
            Some(seq) => write!(f, "pipeline stage `{}` failed on item #{seq}", self.inner.stage),
            None => write!(f, "pipeline stage `{}` failed", self.inner.stage),
        }
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner.source)
    }
}

/// An item that failed a stage with a dead-letter sink
/// ([`PipelineBuilder::dead_letter`](crate::PipelineBuilder::dead_letter)).
pub struct DeadLetter<T> {
    stage: Arc<str>,
    seq: Option<u64>,
    error: BoxError,
    item: T,
}

impl<T> DeadLetter<T> {
    pub(crate) fn new(stage: Arc<str>, seq: Option<u64>, error: BoxError, item: T) -> Self {
        Self { stage, seq, error, item }
    }

    /// The stage the item failed.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The item's position in the input stream, when it came through a stream.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// The stage's error.
    pub fn error(&self) -> &BoxError {
        &self.error
    }

    /// The item, as the stage received it.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The item and the error.
    pub fn into_parts(self) -> (T, BoxError) {
        (self.item, self.error)
    }
}

impl<T: fmt::Debug> fmt::Debug for DeadLetter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("stage", &self.stage)
            .field("seq", &self.seq)
            .field("error", &self.error)
            .field("item", &self.item)
            .finish()
    }
}

/// A fan-out did not produce its result: every error, each with the index of the branch (or
/// part) that returned it.
#[derive(Debug)]
pub struct FanOutError {
    errors: Vec<(usize, BoxError)>,
    succeeded: usize,
    needed: Option<usize>,
}

impl FanOutError {
    /// A fan-out failure with `errors` (branch index, error) and `succeeded` branches that
    /// succeeded. Custom [`Merge`](crate::fan::Merge) strategies build theirs with it.
    pub fn new(errors: Vec<(usize, BoxError)>, succeeded: usize) -> Self {
        Self { errors, succeeded, needed: None }
    }

    /// A quorum of `needed` successes was not reached.
    pub fn quorum(errors: Vec<(usize, BoxError)>, succeeded: usize, needed: usize) -> Self {
        Self { errors, succeeded, needed: Some(needed) }
    }

    /// The errors, each with the index of its branch, in the order they arrived.
    pub fn errors(&self) -> &[(usize, BoxError)] {
        &self.errors
    }

    /// The errors, by value.
    pub fn into_errors(self) -> Vec<(usize, BoxError)> {
        self.errors
    }

    /// How many branches succeeded.
    pub fn succeeded(&self) -> usize {
        self.succeeded
    }

    /// The quorum that was not reached, for [`Quorum`](crate::fan::Quorum).
    pub fn needed(&self) -> Option<usize> {
        self.needed
    }
}

impl fmt::Display for FanOutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.needed {
            Some(n) => write!(
                f,
                "fan-out quorum not reached: {} of {n} needed successes, {} failures",
                self.succeeded,
                self.errors.len()
            )?,
            None => {
                write!(f, "fan-out failed: {} failures, {} successes", self.errors.len(), self.succeeded)?;
            }
        }
        for (i, e) in &self.errors {
            write!(f, "; [{i}] {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FanOutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errors.first().map(|(_, e)| &**e as &(dyn std::error::Error + 'static))
    }
}

/// Why one item of a [`Batch`](crate::Batch) failed: the service's error, or a panic of the service caught
/// by the batch.
#[derive(Debug)]
pub enum BatchError<E> {
    /// The service (its `poll_ready` or its call) failed.
    Service(E),
    /// The service panicked on this item (in `poll_ready`, `call` or its response future).
    Panicked(Panicked),
}

impl<E> BatchError<E> {
    /// The service's error, if it is one.
    pub fn into_service_error(self) -> Option<E> {
        match self {
            Self::Service(e) => Some(e),
            Self::Panicked(_) => None,
        }
    }

    /// Whether the service panicked on the item.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked(_))
    }
}

impl<E: fmt::Display> fmt::Display for BatchError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(e) => e.fmt(f),
            Self::Panicked(p) => p.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BatchError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Service(e) => e.source(),
            Self::Panicked(_) => None,
        }
    }
}

/// A [`Supervised`](crate::supervise::Supervised) service was called without `poll_ready`
/// returning `Ready(Ok)` first.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("a supervised service was called before it was ready")]
pub struct NotReady;

/// The error a `Service` caller gets for an item that went to the dead-letter sink: the
/// original error went to the sink with the item.
#[derive(Debug)]
pub(crate) struct DeadLettered(pub(crate) String);

impl fmt::Display for DeadLettered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (item sent to the dead-letter sink)", self.0)
    }
}

impl std::error::Error for DeadLettered {}
