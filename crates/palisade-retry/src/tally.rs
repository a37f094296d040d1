//! The request counter, tallied per service value and added to the shared counter in
//! batches (core's [`Tally`](palisade_core::__private::Tally)), so that a call touches no
//! shared counter.

use palisade_core::__private::Tallied;
use palisade_core::metric::Counter;

use crate::engine::AttemptCore;

/// A service's handle on the layer state plus its own count of requests not yet added to
/// the shared `requests` counter.
pub(crate) type Tally<St> = palisade_core::__private::Tally<AttemptCore<St>>;

impl<St> Tallied for AttemptCore<St> {
    fn tally_counter(&self) -> &Counter {
        &self.counters.requests
    }
}
