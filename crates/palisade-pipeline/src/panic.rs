//! Panics of user code (stage services, their futures, input streams, dead-letter sinks,
//! listeners) caught where a pipeline runs it on its own tasks, so that one bad item fails
//! alone and the stream goes on.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use palisade_core::BoxError;

use crate::error::StagePanicked;

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `f`, turning a panic into a [`StagePanicked`] error.
#[inline]
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, BoxError> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|payload| Box::new(StagePanicked::new(message(&*payload))) as BoxError)
}

/// An event listener that cannot unwind into the stage publishing the event: a panic is
/// logged (target `palisade`) and the event is dropped for that listener only.
pub(crate) fn guard_listener<E: 'static>(
    listener: impl Fn(&E) + Send + Sync + 'static,
) -> impl Fn(&E) + Send + Sync + 'static {
    move |event: &E| {
        if let Err(e) = catch(|| listener(event)) {
            tracing::warn!(target: "palisade", error = %e, "a pipeline event listener panicked");
        }
    }
}
