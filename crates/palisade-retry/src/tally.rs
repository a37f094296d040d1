//! The request counter, tallied per service value and added to the shared counter in
//! batches, so that a call touches no shared counter.

use std::fmt;
use std::sync::Arc;

use crate::handle::{Core, Counters};
use crate::hedge::HedgeCore;

/// Requests counted locally before they are added to the shared counter.
pub(crate) const FLUSH_EVERY: u64 = 64;

/// Layer state that holds the counters.
pub(crate) trait HasCounters {
    fn counters(&self) -> &Counters;
}

impl HasCounters for Core {
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl HasCounters for HedgeCore {
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// A service's handle on the layer state plus its own count of requests not yet added to
/// the shared `requests` counter (at most [`FLUSH_EVERY`] − 1; added when the service is
/// dropped). A clone starts at zero.
pub(crate) struct Tally<T: HasCounters> {
    core: Arc<T>,
    pending: u64,
}

impl<T: HasCounters> Tally<T> {
    pub(crate) fn new(core: Arc<T>) -> Self {
        Self { core, pending: 0 }
    }

    pub(crate) fn core(&self) -> &Arc<T> {
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
            self.core.counters().requests.add(self.pending);
            self.pending = 0;
        }
    }
}

impl<T: HasCounters> Clone for Tally<T> {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), pending: 0 }
    }
}

impl<T: HasCounters> Drop for Tally<T> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<T: HasCounters + fmt::Debug> fmt::Debug for Tally<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}
