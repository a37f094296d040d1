//! Per-member bookkeeping shared between the worker and the calls in flight.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::classify::Classify;
use palisade_core::sync::lock;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::error::panicked;
use crate::event::PoolEvent;
use crate::shared::Shared;

/// The numbers of one member, read by the worker and by snapshots.
#[derive(Debug)]
pub(crate) struct MemberCounters {
    pub(crate) id: u64,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) served: AtomicU64,
    /// Calls it finished that were judged failures.
    pub(crate) failed: AtomicU64,
    pub(crate) failures_in_a_row: AtomicU32,
    pub(crate) unhealthy: AtomicBool,
    /// Peak-EWMA round-trip estimate, in nanoseconds.
    rtt_nanos: AtomicU64,
    /// When `rtt_nanos` was last updated, in nanoseconds since `Shared::epoch`.
    rtt_stamp: AtomicU64,
}

impl MemberCounters {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn is_unhealthy(&self) -> bool {
        self.unhealthy.load(Ordering::Acquire)
    }

    pub(crate) fn rtt_nanos(&self) -> u64 {
        self.rtt_nanos.load(Ordering::Relaxed)
    }
}

/// What the calls of every member share: the classifier and the failure threshold.
pub(crate) struct Judge<C> {
    pub(crate) classifier: C,
    /// Failures in a row that evict a member; 0 turns it off.
    pub(crate) threshold: u32,
    /// Peak-EWMA decay; `None` when latency is not tracked.
    pub(crate) decay: Option<Duration>,
    pub(crate) shared: Arc<Shared>,
}

/// A member's counters plus the judge its calls report to.
pub(crate) struct MemberState<C> {
    pub(crate) counters: MemberCounters,
    pub(crate) judge: Arc<Judge<C>>,
    /// Set when user code of this member panicked: the message, for the eviction event.
    panic: Mutex<Option<Arc<str>>>,
}

impl<C> std::fmt::Debug for MemberState<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberState").field("counters", &self.counters).finish_non_exhaustive()
    }
}

/// How snapshots see a member without knowing its classifier type.
pub(crate) trait MemberView: Send + Sync + std::fmt::Debug {
    fn counters(&self) -> &MemberCounters;
}

impl<C: Send + Sync> MemberView for MemberState<C> {
    fn counters(&self) -> &MemberCounters {
        &self.counters
    }
}

impl<C> MemberState<C> {
    pub(crate) fn new(id: u64, judge: Arc<Judge<C>>, default_rtt: Duration) -> Self {
        Self {
            counters: MemberCounters {
                id,
                in_flight: AtomicUsize::new(0),
                served: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                failures_in_a_row: AtomicU32::new(0),
                unhealthy: AtomicBool::new(false),
                rtt_nanos: AtomicU64::new(duration_nanos(default_rtt)),
                rtt_stamp: AtomicU64::new(0),
            },
            judge,
            panic: Mutex::new(None),
        }
    }

    /// Marks the member unhealthy because its code panicked; the worker evicts it.
    pub(crate) fn poison(&self, message: Arc<str>) {
        *lock(&self.panic) = Some(message);
        if !self.counters.unhealthy.swap(true, Ordering::AcqRel) {
            self.judge.shared.waker.wake();
        }
    }

    /// The message of the panic that poisoned the member, if one did.
    pub(crate) fn panic_message(&self) -> Option<Arc<str>> {
        lock(&self.panic).clone()
    }

    /// Records the verdict on one call.
    fn record(&self, failure: Option<bool>) {
        let c = &self.counters;
        match failure {
            Some(true) => {
                let n = c.failures_in_a_row.fetch_add(1, Ordering::AcqRel).saturating_add(1);
                let t = self.judge.threshold;
                if t > 0 && n >= t && !c.unhealthy.swap(true, Ordering::AcqRel) {
                    // The worker evicts it on its next turn.
                    self.judge.shared.waker.wake();
                }
            }
            Some(false) => c.failures_in_a_row.store(0, Ordering::Release),
            None => {}
        }
    }

    /// Peak-EWMA update, after Finagle's and tower's `PeakEwma`: a sample above the estimate
    /// replaces it; a lower one is blended in with a weight that decays with the time since
    /// the last update.
    fn observe_rtt(&self, rtt: Duration, now: Instant, decay: Duration) {
        let c = &self.counters;
        let now_nanos = duration_nanos(now.saturating_duration_since(self.judge.shared.epoch));
        let last = c.rtt_stamp.swap(now_nanos, Ordering::Relaxed);
        let prev = c.rtt_nanos.load(Ordering::Relaxed) as f64;
        let next = peak_ewma(prev, rtt, now_nanos.saturating_sub(last), decay);
        c.rtt_nanos.store(next as u64, Ordering::Relaxed);
    }
}

/// One peak-EWMA step in nanoseconds: a sample above `prev` replaces it; a lower one is
/// blended in with a weight that decays with `elapsed_nanos` since the last update.
pub(crate) fn peak_ewma(prev: f64, rtt: Duration, elapsed_nanos: u64, decay: Duration) -> f64 {
    let sample = duration_nanos(rtt) as f64;
    if sample > prev {
        sample
    } else {
        let w = (-(elapsed_nanos as f64) / decay.as_nanos().max(1) as f64).exp();
        prev * w + sample * (1.0 - w)
    }
}

pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pin_project! {
    /// A member's response future: counts the call in flight until it completes or is
    /// dropped, classifies the result and records latency.
    pub(crate) struct Tracked<F, C> {
        #[pin]
        inner: F,
        member: Arc<MemberState<C>>,
        started: Option<Instant>,
        done: bool,
    }

    impl<F, C> PinnedDrop for Tracked<F, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                finish(this.member);
            }
        }
    }
}

impl<F, C> Tracked<F, C> {
    /// Call once the member's in-flight count was raised for this call.
    pub(crate) fn new(inner: F, member: Arc<MemberState<C>>, started: Option<Instant>) -> Self {
        Self { inner, member, started, done: false }
    }
}

/// Publishes the completion of a call whose member panicked.
fn completed<C>(member: &MemberState<C>, started: Option<Instant>, failed: bool) {
    let shared = &member.judge.shared;
    if let Some(started) = started {
        if shared.events.is_observed() {
            let duration = Instant::now().saturating_duration_since(started);
            shared.publish(PoolEvent::Completed { member: member.counters.id, duration, failed });
        }
    }
}

fn finish<C>(member: &MemberState<C>) {
    member.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
    let shared = &member.judge.shared;
    shared.in_flight.add(-1);
    if shared.wants_completions() {
        shared.waker.wake();
    }
}

impl<F, C, T, E> Future for Tracked<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // A member's future panicking fails this request only, with a typed error, and
        // gets the member evicted (its state is unknown after a panic).
        let polled = catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx)));
        let member = &**this.member;
        let result = match polled {
            Ok(poll) => ready!(poll),
            Err(payload) => {
                let err = panicked("member", member.judge.shared.name.clone(), "response", &*payload);
                member.poison(err.message().into());
                *this.done = true;
                member.counters.failed.fetch_add(1, Ordering::Relaxed);
                member.judge.shared.failed.increment();
                completed(member, *this.started, true);
                finish(member);
                return Poll::Ready(Err(err.into()));
            }
        };
        let judge = &*member.judge;
        let now = this.started.map(|_| Instant::now());
        let classified = catch_unwind(AssertUnwindSafe(|| match (*this.started, now, judge.decay) {
            (Some(started), Some(now), Some(decay)) => {
                let rtt = now.saturating_duration_since(started);
                member.observe_rtt(rtt, now, decay);
                judge.classifier.classify_timed(&result, rtt)
            }
            _ => judge.classifier.classify(&result),
        }));
        // A panicking classifier gives no verdict.
        let mut failed = false;
        if let Ok(verdict) = classified {
            failed = !verdict.is_ignored() && verdict.is_failure();
            member.record(if verdict.is_ignored() { None } else { Some(verdict.is_failure()) });
        }
        if failed {
            member.counters.failed.fetch_add(1, Ordering::Relaxed);
            judge.shared.failed.increment();
        } else {
            judge.shared.completed.increment();
        }
        if let (Some(started), Some(now)) = (*this.started, now) {
            if judge.shared.events.is_observed() {
                let duration = now.saturating_duration_since(started);
                judge.shared.publish(PoolEvent::Completed { member: member.counters.id, duration, failed });
            }
        }
        member.counters.served.fetch_add(1, Ordering::Relaxed);
        *this.done = true;
        finish(member);
        Poll::Ready(result.map_err(Into::into))
    }
}
