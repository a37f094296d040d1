//! A count kept by one service value and added to a shared counter in batches, so that a
//! call touches no shared counter (the retry, hedge and fallback services count their
//! requests this way).

use std::fmt;
use std::sync::Arc;

use crate::metric::Counter;

/// Shared state holding the counter a [`Tally`] adds to.
pub trait Tallied {
    /// The shared counter.
    fn tally_counter(&self) -> &Counter;
}

/// A service value's handle on its layer's shared state plus its own count not yet added
/// to the shared counter (at most [`Tally::EVERY`] − 1; added when the tally is dropped).
/// A clone starts at zero.
pub struct Tally<T: Tallied> {
    shared: Arc<T>,
    pending: u64,
}

impl<T: Tallied> Tally<T> {
    /// Counts added to the shared counter at once.
    pub const EVERY: u64 = 64;

    /// A tally on `shared`, at zero.
    pub fn new(shared: Arc<T>) -> Self {
        Self { shared, pending: 0 }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<T> {
        &self.shared
    }

    /// Counts one; a plain add, and one atomic add per [`Tally::EVERY`] counts. Returns
    /// `true` on those (a caller may do its own every-so-often work then).
    #[inline]
    pub fn count(&mut self) -> bool {
        self.pending += 1;
        if self.pending >= Self::EVERY {
            self.flush();
            return true;
        }
        false
    }

    fn flush(&mut self) {
        if self.pending > 0 {
            self.shared.tally_counter().add(self.pending);
            self.pending = 0;
        }
    }
}

impl<T: Tallied> Clone for Tally<T> {
    fn clone(&self) -> Self {
        Self::new(self.shared.clone())
    }
}

impl<T: Tallied> Drop for Tally<T> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<T: Tallied + fmt::Debug> fmt::Debug for Tally<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shared(Counter);

    impl Tallied for Shared {
        fn tally_counter(&self) -> &Counter {
            &self.0
        }
    }

    #[test]
    fn counts_are_added_every_64_and_on_drop() {
        let shared = Arc::new(Shared(Counter::new("palisade_test_calls_total", "t")));
        let mut tally = Tally::new(shared.clone());
        let mut clone = tally.clone();
        let flushes = (0..130).filter(|_| tally.count()).count();
        assert_eq!((flushes, shared.0.get()), (2, 128));
        assert!(!clone.count());
        drop(tally);
        assert_eq!(shared.0.get(), 130);
        drop(clone);
        assert_eq!(shared.0.get(), 131);
    }
}
