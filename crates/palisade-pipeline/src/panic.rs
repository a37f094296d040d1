//! Panics of user code (stage services, their futures, input streams, dead-letter sinks)
//! caught where a pipeline runs it on its own tasks, so that one bad item fails alone and
//! the stream goes on. The error is palisade-core's [`Panicked`] (component `"stage"`).

use std::sync::Arc;

use palisade_core::panic::Panicked;
use palisade_core::BoxError;

/// Runs `f`, turning a panic into a [`Panicked`] error of a stage, at `site` (`"call"`,
/// `"poll_ready"`, …). The stage's name is filled in by [`named`] where the item's failure
/// is handled (the hot path does not carry it).
#[inline]
pub(crate) fn catch<T>(site: &'static str, f: impl FnOnce() -> T) -> Result<T, BoxError> {
    palisade_core::panic::catch(f)
        .map_err(|payload| Box::new(Panicked::from_payload("stage", "", payload).with_site(site)) as BoxError)
}

/// `error`, with the stage's name written into it when it is a [`Panicked`] caught by
/// [`catch`] without one.
pub(crate) fn named(error: BoxError, stage: &Arc<str>) -> BoxError {
    match error.downcast_ref::<Panicked>() {
        Some(p) if p.name().is_empty() => {
            let named = Panicked::new(p.component(), stage.clone(), p.message());
            Box::new(match p.site() {
                Some(site) => named.with_site(site),
                None => named,
            })
        }
        _ => error,
    }
}
