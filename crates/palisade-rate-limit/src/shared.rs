//! State shared by a layer and every service it makes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::__private::StripedCounter;
use palisade_core::event::EventBus;
use palisade_core::metric::Counter;
use palisade_core::rejection::{KeyMissing, KeySetFull, RateLimited};
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use tokio::time::Instant;

use crate::algorithm::Admit;
use crate::error::CostExceedsCapacity;
use crate::error::Denied;
use crate::event::RateLimitEvent;
use crate::limiter::RateLimiter;
use crate::store::Grant;
use crate::tier::{Answer, TierRt, TierView};

pub(crate) type Weigher<Req> = Box<dyn Fn(&Req) -> u32 + Send + Sync>;

/// A counter written on every admitted request: each thread adds on a stripe of its own
/// (no locked add; see `palisade_core::__private::StripedCounter`), and reading sums them (one
/// shared counter cost more than the limit itself on two threads).
pub(crate) struct Striped {
    stripes: StripedCounter,
    #[cfg(feature = "metrics")]
    export: Counter,
}

impl fmt::Debug for Striped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Striped").field(&self.get()).finish()
    }
}

impl Striped {
    #[allow(unused_variables)]
    pub(crate) fn new(metric: &'static str, name: &str) -> Self {
        Self {
            stripes: StripedCounter::new(),
            #[cfg(feature = "metrics")]
            export: Counter::new(metric, name),
        }
    }

    #[inline]
    pub(crate) fn increment(&self) {
        self.stripes.increment();
        #[cfg(feature = "metrics")]
        self.export.increment();
    }

    pub(crate) fn get(&self) -> u64 {
        self.stripes.get()
    }
}

/// A wait of `u64::MAX` nanoseconds or more: `Duration::MAX` as stored (it saturates to
/// "never" wherever it is added to an instant).
const UNBOUNDED_WAIT: u64 = u64::MAX;

/// The longest wait of `when_full` in nanoseconds (0: refuse at once).
fn wait_nanos(when_full: WhenFull) -> u64 {
    u64::try_from(when_full.max_wait().as_nanos()).unwrap_or(UNBOUNDED_WAIT)
}

/// The longest wait allowed from `now` when the wait ends at `deadline` (`None`: reject
/// mode). Decided by the deadline the caller computed once, from one reading of the mode.
pub(crate) fn max_wait(now: Instant, deadline: Option<Instant>) -> Option<Duration> {
    Some(deadline?.saturating_duration_since(now))
}

/// The part of the shared state that does not depend on the request type (the handle's).
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    /// `when_full`'s longest wait in nanoseconds (0: refuse), changeable through the handle;
    /// each decision reads it once (Resilience4j's `changeTimeoutDuration`: callers already
    /// waiting keep their deadline).
    max_wait: AtomicU64,
    pub(crate) tiers: Box<[TierView]>,
    pub(crate) events: EventBus<RateLimitEvent>,
    pub(crate) admitted: Striped,
    pub(crate) rejected: Counter,
    pub(crate) waited: Counter,
    pub(crate) evicted: Counter,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("when_full", &self.when_full())
            .field("tiers", &self.tiers.iter().map(|t| &*t.name).collect::<Vec<_>>())
            .field("admitted", &self.admitted)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared<Req> {
    pub(crate) core: Arc<Core>,
    tiers: Box<[TierRt<Req>]>,
    weigher: Option<Weigher<Req>>,
    /// The only tier when it is global and unconditional.
    single: Option<RateLimiter>,
    /// Admission needs the request (keys, weights, conditions): it happens in `call`.
    pub(crate) needs_request: bool,
    /// One keyed tier that applies to every request, unweighted and never queueing: in reject
    /// mode `call` checks the key and keeps nothing.
    keyed_check: bool,
}

impl<Req> fmt::Debug for Shared<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("core", &self.core)
            .field("weighted", &self.weigher.is_some())
            .field("needs_request", &self.needs_request)
            .finish_non_exhaustive()
    }
}

/// Why the tiers did not admit a request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refusal {
    Retry {
        tier: usize,
        after: Duration,
    },
    Capacity {
        tier: usize,
        cost: u32,
        capacity: u32,
    },
    Keys {
        tier: usize,
        capacity: usize,
    },
    /// A keyed tier got no key and refuses such requests.
    Unkeyed {
        tier: usize,
    },
    /// Tiers admit at different times: hold nothing and ask again after `after` (if that
    /// is before the wait's deadline; refused with `after` otherwise).
    Later {
        after: Duration,
    },
}

impl Refusal {
    fn from_denied(tier: usize, denied: Denied) -> Self {
        match denied {
            Denied::RetryAfter(after) => Self::Retry { tier, after },
            Denied::CostExceedsCapacity { cost, capacity } => Self::Capacity { tier, cost, capacity },
            Denied::KeySetFull { capacity } => Self::Keys { tier, capacity },
        }
    }
}

/// What the tiers admitted for one request; given back with [`Shared::refund`] unless spent.
#[derive(Debug)]
pub(crate) enum Grants {
    /// The admission of the only tier, a global unconditional one (the fast path).
    Single { admit: Admit, cost: u32 },
    /// Admissions of any tiers, kept to be given back (a wait, or a reservation made in
    /// `poll_ready`).
    Tiers(Vec<(usize, Grant)>),
    /// Admitted at once and spent right away: nothing to give back.
    Spent,
}

/// What the tiers before a refusing one admitted: how many, and the first leaky bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Earlier {
    count: usize,
    /// When the last of them may go (`now` unless a leaky bucket queued it).
    ready: Instant,
    leaky: Option<usize>,
}

/// Tiers whose admissions are held on the stack while the others are asked.
const INLINE_TIERS: usize = 4;

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: Arc<str>,
        when_full: WhenFull,
        tiers: Box<[TierView]>,
        events: EventBus<RateLimitEvent>,
        admitted: Striped,
        rejected: Counter,
        waited: Counter,
        evicted: Counter,
    ) -> Self {
        let max_wait = AtomicU64::new(wait_nanos(when_full));
        Self { name, max_wait, tiers, events, admitted, rejected, waited, evicted }
    }

    /// What a request that cannot be admitted now does.
    pub(crate) fn when_full(&self) -> WhenFull {
        match self.max_wait.load(Ordering::Relaxed) {
            0 => WhenFull::Refuse,
            UNBOUNDED_WAIT => WhenFull::wait(Duration::MAX),
            n => WhenFull::wait(Duration::from_nanos(n)),
        }
    }

    /// Changes it for every decision from now on.
    pub(crate) fn set_when_full(&self, when_full: WhenFull) {
        self.max_wait.store(wait_nanos(when_full), Ordering::Relaxed);
    }
}

impl<Req> Shared<Req> {
    pub(crate) fn new(core: Arc<Core>, tiers: Box<[TierRt<Req>]>, weigher: Option<Weigher<Req>>) -> Self {
        let needs_request = weigher.is_some() || tiers.iter().any(TierRt::needs_request);
        let single = match &*tiers {
            [tier] => tier.unconditional_limiter().cloned(),
            _ => None,
        };
        // Only in reject mode, checked per call (the mode can change at run time).
        let keyed_check = weigher.is_none()
            && matches!(&*tiers, [tier] if tier.unconditional_keyed().is_some_and(|k| !k.queues()));
        Self { core, tiers, weigher, single, needs_request, keyed_check }
    }

    /// The reject-mode fast path of a layer with one global unconditional tier: admits one
    /// request now on the limiter's own clock. `None` when it does not apply.
    #[inline]
    pub(crate) fn admit_single_now(&self) -> Option<Result<(Grants, Option<Instant>), Refusal>> {
        let limiter = self.single.as_ref()?;
        if self.core.when_full().waits() {
            return None;
        }
        Some(match limiter.admit_now(1) {
            Ok((admit, later)) => Ok((Grants::Single { admit, cost: 1 }, later)),
            Err(denied) => Err(Refusal::from_denied(0, denied)),
        })
    }

    /// The reject-mode fast path of a layer with one keyed tier (see `keyed_check`):
    /// `None` when it does not apply.
    #[inline]
    pub(crate) fn check_keyed(&self, req: &Req) -> Option<Result<(), Refusal>> {
        if !self.keyed_check || self.core.when_full().waits() {
            return None;
        }
        let tier = self.tiers.first()?;
        let keyed = tier.unconditional_keyed()?;
        Some(match keyed.check(req, 1, &tier.name) {
            Answer::Decided(result, evicted) => {
                if evicted > 0 {
                    self.evicted(0, evicted);
                }
                result.map_err(|denied| Refusal::from_denied(0, denied))
            }
            Answer::Skip => Ok(()),
            Answer::Missing => Err(Refusal::Unkeyed { tier: 0 }),
        })
    }

    /// When a request arriving at `now` stops waiting; `None` in reject mode.
    pub(crate) fn deadline(&self, now: Instant) -> Option<Instant> {
        let when_full = self.core.when_full();
        when_full.waits().then(|| crate::limiter::add(now, when_full.max_wait()))
    }

    #[inline]
    pub(crate) fn cost(&self, req: &Req) -> u32 {
        self.weigher.as_ref().map_or(1, |w| w(req))
    }

    /// Asks every applicable tier in order; all admit or none keeps anything. With `keep`,
    /// admissions are returned even when they may proceed at once (to be given back if the
    /// reservation is never used); without, only when the request must wait.
    #[inline]
    pub(crate) fn acquire(
        &self,
        req: Option<&Req>,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
        keep: bool,
    ) -> Result<(Grants, Instant), Refusal> {
        if let Some(limiter) = &self.single {
            return match limiter.admit(cost, now, max_wait) {
                Ok((admit, ready)) => Ok((Grants::Single { admit, cost }, ready)),
                Err(denied) => Err(Refusal::from_denied(0, denied)),
            };
        }
        // No allocation unless more than `INLINE_TIERS` tiers admit or the grants are kept.
        let mut inline: [Option<(usize, Grant)>; INLINE_TIERS] = [const { None }; INLINE_TIERS];
        let mut spill = Vec::new();
        let mut admitted = 0;
        let mut ready = now;
        for (i, tier) in self.tiers.iter().enumerate() {
            // A tier's key function and predicate are user code: if one panics, the
            // admissions of the tiers before it are given back before the panic goes on to
            // the caller (the request never runs; it must not spend a later caller's quota
            // or keep a booked slot that makes later callers wait for nobody).
            let answer = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tier.acquire(req, cost, now, max_wait)
            })) {
                Ok(answer) => answer,
                Err(payload) => {
                    self.refund_each(inline.into_iter().flatten().chain(spill));
                    std::panic::resume_unwind(payload);
                }
            };
            let (result, evicted) = match answer {
                Answer::Decided(result, evicted) => (result, evicted),
                Answer::Skip => continue,
                Answer::Missing => {
                    self.refund_each(inline.into_iter().flatten().chain(spill));
                    return Err(Refusal::Unkeyed { tier: i });
                }
            };
            if evicted > 0 {
                self.evicted(i, evicted);
            }
            match result {
                Ok(grant) => {
                    ready = ready.max(grant.ready_at());
                    match inline.get_mut(admitted) {
                        Some(slot) => *slot = Some((i, grant)),
                        None => spill.push((i, grant)),
                    }
                    admitted += 1;
                }
                Err(denied) => {
                    let earlier = Earlier {
                        count: admitted,
                        ready,
                        leaky: inline
                            .iter()
                            .flatten()
                            .chain(&spill)
                            .map(|&(t, _)| t)
                            .find(|&t| self.queues(t)),
                    };
                    self.refund_each(inline.into_iter().flatten().chain(spill));
                    return Err(self.refusal_of_all(i, denied, earlier, req, cost, now, max_wait));
                }
            }
        }
        if !keep && ready <= now {
            return Ok((Grants::Spent, ready));
        }
        if admitted > 1 && ready > now {
            // Tiers that admit at different times cannot all hold a reservation: a tier
            // reserved for `now` but used at `ready` would let its key pass twice at once
            // later. Hold nothing and try again when the slowest tier is ready.
            //
            // A leaky bucket lets a weight above 1 leave only after a wait, even when
            // empty: such a request could never find every tier admitting at once, and
            // would be sent back (or held until its deadline) for ever. It can never pass,
            // as a weight above 1 at a leaky bucket's direct check: say so.
            let leaky = if cost > 1 {
                inline.iter().flatten().chain(&spill).map(|&(i, _)| i).find(|&i| self.queues(i))
            } else {
                None
            };
            self.refund_each(inline.into_iter().flatten().chain(spill));
            if let Some(tier) = leaky {
                return Err(Refusal::Capacity { tier, cost, capacity: 1 });
            }
            return Err(Refusal::Later { after: ready - now });
        }
        let mut all = Vec::with_capacity(admitted);
        all.extend(inline.into_iter().flatten());
        all.extend(spill);
        Ok((Grants::Tiers(all), ready))
    }

    /// The refusal of a request that tier `first` refused with `denied`, after `earlier`
    /// admitted it: a wait is made the time until every tier after it admits the request
    /// too (each asked without booking), so that the same request sent `retry_after` later
    /// passes them all; a later tier that can never admit it (its cost, a missing key)
    /// answers instead. The tiers before `first` admitted it now, so they admit it then as
    /// well. Nothing is held here (the earlier admissions were given back), so a key
    /// function or condition that panics only unwinds.
    ///
    /// Several tiers admit a request only when each can at once (see `Refusal::Later`): in
    /// reject mode every tier is asked for that (a leaky bucket's place in its queue would
    /// be given back), and a weight above 1 at a leaky bucket, which never leaves at once,
    /// can never pass.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn refusal_of_all(
        &self,
        first: usize,
        denied: Denied,
        earlier: Earlier,
        req: Option<&Req>,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> Refusal {
        let Denied::RetryAfter(mut after) = denied else {
            return Refusal::from_denied(first, denied);
        };
        let at_once = max_wait.or(Some(Duration::ZERO));
        let mut applied = earlier.count + 1;
        let mut leaky = earlier.leaky.or_else(|| self.queues(first).then_some(first));
        let mut tier = first;
        for (j, later) in self.tiers.iter().enumerate().skip(first + 1) {
            let answer = later.probe(req, cost, now, at_once);
            if !matches!(answer, Answer::Skip) {
                applied += 1;
                leaky = leaky.or_else(|| self.queues(j).then_some(j));
            }
            match answer {
                // Admits now; or a new key in a full tier, which may find room later: the
                // wait stands.
                Answer::Decided(Ok(()) | Err(Denied::KeySetFull { .. }), _) | Answer::Skip => {}
                Answer::Decided(Err(Denied::RetryAfter(wait)), _) => {
                    if wait > after {
                        (tier, after) = (j, wait);
                    }
                }
                Answer::Decided(Err(denied), _) => return Refusal::from_denied(j, denied),
                Answer::Missing => return Refusal::Unkeyed { tier: j },
            }
        }
        if let (Some(leaky), true) = (leaky, applied > 1) {
            if cost > 1 {
                return Refusal::Capacity { tier: leaky, cost, capacity: 1 };
            }
            if max_wait.is_none() {
                // Leaky buckets queue: the time each lets the request leave at once. Those
                // before `first` admitted it to leave at `earlier.ready`; `first`'s own
                // wait was for a place in its queue.
                after = after.max(earlier.ready.saturating_duration_since(now));
                if self.queues(first) {
                    if let Some(Answer::Decided(Err(Denied::RetryAfter(wait)), _)) =
                        self.tiers.get(first).map(|t| t.probe(req, cost, now, at_once))
                    {
                        after = after.max(wait);
                    }
                }
            }
        }
        Refusal::Retry { tier, after }
    }

    /// Whether tier `i` queues by itself (a leaky bucket).
    fn queues(&self, i: usize) -> bool {
        self.tiers.get(i).is_some_and(TierRt::queues)
    }

    fn refund_each(&self, grants: impl Iterator<Item = (usize, Grant)>) {
        for (i, grant) in grants {
            if let Some(tier) = self.tiers.get(i) {
                tier.refund(grant);
            }
        }
    }

    /// Gives back what was admitted but not used.
    pub(crate) fn refund(&self, grants: Grants) {
        match grants {
            Grants::Single { admit, cost } => {
                if let Some(limiter) = &self.single {
                    limiter.refund_admit(admit, cost);
                }
            }
            Grants::Tiers(grants) => self.refund_each(grants.into_iter()),
            Grants::Spent => {}
        }
    }

    /// Counts and publishes a refusal and turns it into the error callers see.
    pub(crate) fn reject(&self, refusal: Refusal) -> BoxError {
        let core = &self.core;
        core.rejected.increment();
        match refusal {
            Refusal::Later { after } => {
                if core.events.is_observed() {
                    core.events
                        .publish(RateLimitEvent::Rejected { tier: Arc::from(""), retry_after: Some(after) });
                }
                RateLimited::new(core.name.clone(), after).into()
            }
            Refusal::Retry { tier, after } => {
                if core.events.is_observed() {
                    core.events.publish(RateLimitEvent::Rejected {
                        tier: self.tier_name(tier),
                        retry_after: Some(after),
                    });
                }
                RateLimited::new(core.name.clone(), after).into()
            }
            Refusal::Capacity { tier, cost, capacity } => {
                let tier = self.tier_name(tier);
                if core.events.is_observed() {
                    core.events.publish(RateLimitEvent::Rejected { tier: tier.clone(), retry_after: None });
                }
                CostExceedsCapacity::new(core.name.clone(), tier, cost, capacity).into()
            }
            Refusal::Keys { tier, capacity } => {
                if core.events.is_observed() {
                    core.events
                        .publish(RateLimitEvent::Rejected { tier: self.tier_name(tier), retry_after: None });
                }
                KeySetFull::new(core.name.clone(), capacity).into()
            }
            Refusal::Unkeyed { tier } => {
                let tier = self.tier_name(tier);
                if core.events.is_observed() {
                    core.events.publish(RateLimitEvent::Rejected { tier: tier.clone(), retry_after: None });
                }
                KeyMissing::new(core.name.clone()).into()
            }
        }
    }

    pub(crate) fn delayed(&self, delay: Duration) {
        self.core.waited.increment();
        if self.core.events.is_observed() {
            self.core.events.publish(RateLimitEvent::Delayed { delay });
        }
    }

    fn evicted(&self, tier: usize, keys: u64) {
        self.core.evicted.add(keys);
        if self.core.events.is_observed() {
            self.core.events.publish(RateLimitEvent::Evicted { tier: self.tier_name(tier), keys });
        }
    }

    fn tier_name(&self, tier: usize) -> Arc<str> {
        self.tiers.get(tier).map_or_else(|| Arc::from(""), |t| t.name.clone())
    }
}
