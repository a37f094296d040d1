//! Panics of user code (codecs, handlers) caught where palisade runs it on its own tasks, so
//! that one bad call fails alone and the machinery goes on. (Event listeners are guarded by
//! palisade-core's event bus; futures by core's `CatchUnwind`.)

use palisade_core::panic::payload_message;

/// Runs `f` under palisade-core's [`catch`](palisade_core::panic::catch), turning a panic
/// into `Err(message)`.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    palisade_core::panic::catch(f).map_err(|payload| payload_message(&*payload).to_owned())
}
