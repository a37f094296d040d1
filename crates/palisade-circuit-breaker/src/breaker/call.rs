//! What a call in flight holds: a counted reference to its breaker (striped for a single
//! breaker), and the guard that records its result.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::Classification;

use tokio::time::Instant;

use super::{Admission, Breaker};
use crate::sync::{stripe, stripes};

// === impl Striped ===

/// A reference to a breaker held by the calls of one stripe; on its own cache lines.
#[repr(align(128))]
pub(crate) struct StripeRef<C> {
    breaker: Arc<Breaker<C>>,
    /// This reference's stripe: the calls holding it count in that stripe, without looking
    /// up the thread's stripe again.
    stripe: usize,
}

/// A breaker and one reference to it per stripe. Every call in flight holds a counted
/// reference to its breaker; taking it from the calling thread's stripe makes threads count
/// on different cache lines instead of all on the breaker's own reference count, the one
/// line every call would otherwise write.
pub(crate) struct Striped<C> {
    pub(crate) breaker: Arc<Breaker<C>>,
    refs: Box<[Arc<StripeRef<C>>]>,
}

impl<C> Striped<C> {
    pub(crate) fn new(breaker: Arc<Breaker<C>>) -> Self {
        let refs = (0..stripes().next_power_of_two())
            .map(|stripe| Arc::new(StripeRef { breaker: breaker.clone(), stripe }))
            .collect();
        Self { breaker, refs }
    }

    /// A counted reference for a call made on this thread.
    #[inline]
    pub(crate) fn hold(&self) -> Holder<C> {
        Holder::Striped(self.refs[stripe() & (self.refs.len() - 1)].clone())
    }
}

/// What a call in flight holds its breaker by.
pub(crate) enum Holder<C> {
    /// The breaker itself (keyed breakers: the key map counts the calls in flight).
    Direct(Arc<Breaker<C>>),
    /// A stripe's reference.
    Striped(Arc<StripeRef<C>>),
}

impl<C> Holder<C> {
    /// The stripe the call counts in (0 for a keyed breaker, which has one).
    #[inline]
    fn stripe(&self) -> usize {
        match self {
            Self::Direct(_) => 0,
            Self::Striped(r) => r.stripe,
        }
    }
}

impl<C> std::ops::Deref for Holder<C> {
    type Target = Breaker<C>;

    #[inline]
    fn deref(&self) -> &Breaker<C> {
        match self {
            Self::Direct(b) => b,
            Self::Striped(r) => &r.breaker,
        }
    }
}

// === impl CallGuard ===

/// A call in flight: records its result, or gives back its trial slot if it never ends
/// (the response future was dropped, or the inner future panicked).
pub(crate) struct CallGuard<C> {
    breaker: Holder<C>,
    admission: Admission,
    start: Option<Instant>,
}

impl<C> fmt::Debug for CallGuard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard").field("admission", &self.admission).finish_non_exhaustive()
    }
}

impl<C> CallGuard<C> {
    #[inline]
    pub(crate) fn new(breaker: Holder<C>, admission: Admission) -> Self {
        let start = (breaker.core.measures() && admission != Admission::Pass).then(Instant::now);
        Self { breaker, admission, start }
    }

    /// Classifies and records `result` for the guard in `slot`, leaving the slot empty —
    /// or, when its outcome comes at the end of its response body (a gRPC stream: status in
    /// the trailers), moves the guard into the body and records it there
    /// ([`eos`](palisade_core::classify::eos)); a body dropped before its end drops the
    /// guard: ignored, a trial slot given back.
    ///
    /// Works on the guard in place (the response future's field) rather than on a moved
    /// copy: the common path reads it field by field, just after `call` wrote it.
    #[inline]
    pub(crate) fn finish<T, E>(slot: &mut Option<Self>, result: &mut Result<T, E>)
    where
        C: palisade_core::Classify<T, E> + Send + Sync + 'static,
    {
        let Some(guard) = slot.as_mut() else { return };
        if guard.admission != Admission::Pass {
            if let Some(deferral) = guard.breaker.classifier.defer_eos(result) {
                if let Some(guard) = slot.take() {
                    deferral.attach(move |eos: palisade_core::classify::eos::Eos<'_>| guard.finish_eos(&eos));
                }
                return;
            }
            let timing = guard.timing();
            let verdict = match timing {
                Some((_, elapsed)) => guard.breaker.classifier.classify_timed(result, elapsed),
                None => guard.breaker.classifier.classify(result),
            };
            guard.record(verdict, timing);
        }
        *slot = None;
    }

    /// Records a deferred call at the end of its response body, timed to that end.
    fn finish_eos(mut self, eos: &palisade_core::classify::eos::Eos<'_>) {
        let timing = self.timing();
        let verdict = match timing {
            Some((_, elapsed)) => eos.classify_timed(elapsed),
            None => eos.classify(),
        };
        self.record(verdict, timing);
    }

    /// The call's end and duration, when durations are measured.
    #[inline]
    fn timing(&self) -> Option<(Instant, Duration)> {
        self.start.map(|start| {
            let end = Instant::now();
            (end, end.saturating_duration_since(start))
        })
    }

    #[inline]
    fn record(&mut self, verdict: Classification, timing: Option<(Instant, Duration)>) {
        let admission = std::mem::replace(&mut self.admission, Admission::Pass);
        self.breaker.core.record(admission, verdict, timing, self.breaker.stripe());
    }
}

impl<C> Drop for CallGuard<C> {
    fn drop(&mut self) {
        match self.admission {
            Admission::Pass => {}
            Admission::Record { .. } => self.breaker.core.counters.ignored.increment(),
            Admission::Trial { gen } => {
                self.breaker.core.counters.ignored.increment();
                self.breaker.core.release_trial(gen);
            }
        }
    }
}
