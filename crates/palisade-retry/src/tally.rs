//! The request counter, tallied per service value and added to the shared counter in
//! batches, so that a call touches no shared counter.

use std::fmt;
use std::sync::Arc;

use crate::engine::AttemptCore;

/// Requests counted locally before they are added to the shared counter.
pub(crate) const FLUSH_EVERY: u64 = 64;

/// A service's handle on the layer state plus its own count of requests not yet added to
/// the shared `requests` counter (at most [`FLUSH_EVERY`] − 1; added when the service is
/// dropped). A clone starts at zero.
pub(crate) struct Tally<St> {
    core: Arc<AttemptCore<St>>,
    pending: u64,
}

impl<St> Tally<St> {
    pub(crate) fn new(core: Arc<AttemptCore<St>>) -> Self {
        Self { core, pending: 0 }
    }

    pub(crate) fn core(&self) -> &Arc<AttemptCore<St>> {
        &self.core
    }

    /// Counts one request; a plain add, and one atomic add per [`FLUSH_EVERY`] requests.
    /// Returns `true` on those (the caller then makes its budget deposit read the clock).
    #[inline]
    pub(crate) fn count(&mut self) -> bool {
        self.pending += 1;
        if self.pending >= FLUSH_EVERY {
            self.flush();
            return true;
        }
        false
    }

    fn flush(&mut self) {
        if self.pending > 0 {
            self.core.counters.requests.add(self.pending);
            self.pending = 0;
        }
    }
}

impl<St> Clone for Tally<St> {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), pending: 0 }
    }
}

impl<St> Drop for Tally<St> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<St: fmt::Debug> fmt::Debug for Tally<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}
