//! The run-time form of a tier: what the service asks per request ([`TierRt`]), keyed tiers
//! behind [`KeyedRuntime`], and what the handle sees ([`TierView`]).

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::keyed::{Unkeyed, WarnOnce};
use tokio::time::Instant;

use super::{Predicate, Resolved};
use crate::algorithm::Status;
use crate::error::Denied;
use crate::limiter::{KeyedRateLimiter, RateLimiter};
use crate::quota::Quota;
use crate::store::{Grant, KeyedStore};

pub(crate) struct TierRt<Req> {
    pub(crate) name: Arc<str>,
    pub(super) when: Option<Predicate<Req>>,
    pub(super) kind: KindRt<Req>,
}

pub(super) enum KindRt<Req> {
    Direct(RateLimiter),
    Keyed(Box<dyn KeyedRuntime<Req>>),
}

/// A tier's answer for one request.
pub(crate) enum Answer<T> {
    /// The tier does not apply (its condition, or an unkeyed request passing through).
    Skip,
    /// A keyed tier got no key and refuses such requests.
    Missing,
    /// The decision, and the number of keys evicted to make room.
    Decided(Result<T, Denied>, u64),
}

impl<Req> TierRt<Req> {
    /// A global unconditional tier named `"global"` over `limiter`.
    pub(crate) fn direct(limiter: RateLimiter) -> (Self, TierView) {
        let name: Arc<str> = Arc::from("global");
        let view = TierView { name: name.clone(), kind: ViewKind::Direct(limiter.clone()) };
        (Self { name, when: None, kind: KindRt::Direct(limiter) }, view)
    }

    /// The limiter of a global tier that applies to every request.
    pub(crate) fn unconditional_limiter(&self) -> Option<&RateLimiter> {
        match (&self.kind, &self.when) {
            (KindRt::Direct(l), None) => Some(l),
            _ => None,
        }
    }

    /// The runtime of a keyed tier that applies to every request.
    pub(crate) fn unconditional_keyed(&self) -> Option<&dyn KeyedRuntime<Req>> {
        match (&self.kind, &self.when) {
            (KindRt::Keyed(k), None) => Some(&**k),
            _ => None,
        }
    }

    /// Whether the tier queues requests by itself (a leaky bucket).
    pub(crate) fn queues(&self) -> bool {
        match &self.kind {
            KindRt::Direct(l) => matches!(l.algorithm(), crate::Algorithm::LeakyBucket { .. }),
            KindRt::Keyed(k) => k.queues(),
        }
    }

    pub(crate) fn needs_request(&self) -> bool {
        self.when.is_some() || matches!(self.kind, KindRt::Keyed(_))
    }

    /// Without a request (admission in `poll_ready`) only global unconditional tiers exist.
    #[inline]
    pub(crate) fn acquire(
        &self,
        req: Option<&Req>,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> Answer<Grant> {
        if let (Some(when), Some(req)) = (&self.when, req) {
            if !when(req) {
                return Answer::Skip;
            }
        }
        match (&self.kind, req) {
            (KindRt::Direct(l), _) => Answer::Decided(l.acquire(cost, now, max_wait), 0),
            (KindRt::Keyed(k), Some(req)) => k.acquire(req, cost, now, max_wait, &self.name),
            (KindRt::Keyed(_), None) => Answer::Skip,
        }
    }

    /// What [`acquire`](Self::acquire) would answer, booking nothing.
    pub(crate) fn probe(
        &self,
        req: Option<&Req>,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> Answer<()> {
        if let (Some(when), Some(req)) = (&self.when, req) {
            if !when(req) {
                return Answer::Skip;
            }
        }
        match (&self.kind, req) {
            (KindRt::Direct(l), _) => Answer::Decided(l.probe(cost, now, max_wait), 0),
            (KindRt::Keyed(k), Some(req)) => k.probe(req, cost, now, max_wait),
            (KindRt::Keyed(_), None) => Answer::Skip,
        }
    }

    pub(crate) fn refund(&self, grant: Grant) {
        match &self.kind {
            KindRt::Direct(l) => l.refund(grant),
            KindRt::Keyed(k) => k.refund(grant),
        }
    }
}

pub(crate) trait KeyedRuntime<Req>: Send + Sync {
    fn acquire(
        &self,
        req: &Req,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
        tier: &str,
    ) -> Answer<Grant>;
    fn refund(&self, grant: Grant);
    /// What `acquire` would answer, booking nothing (no warning for a missing key: the
    /// request was already refused).
    fn probe(&self, req: &Req, cost: u32, now: Instant, max_wait: Option<Duration>) -> Answer<()>;
    fn view(&self) -> Arc<dyn KeyedView>;
    /// Admits `cost` now without waiting and without anything to refund.
    fn check(&self, req: &Req, cost: u32, tier: &str) -> Answer<()>;
    /// Whether the store queues requests in reject mode (a leaky bucket).
    fn queues(&self) -> bool;
}

/// What a keyed tier does with a request without a key.
pub(super) enum UnkeyedRt {
    Reject,
    PassThrough,
    /// One limit for every unkeyed request.
    Shared(RateLimiter),
}

/// Marks a [`Grant`] of a keyed tier's shared unkeyed limit (so a refund finds it).
struct SharedSlot;

impl UnkeyedRt {
    pub(super) fn new(s: &Resolved, quota: Option<Quota>) -> Result<Self, ConfigError> {
        Ok(match s.when_unkeyed {
            Unkeyed::Reject => Self::Reject,
            Unkeyed::PassThrough => Self::PassThrough,
            Unkeyed::Shared => {
                let quota = quota.ok_or_else(|| {
                    ConfigError::new(
                        "when_unkeyed",
                        "`shared` needs the tier's one quota (a per-key quota or a store of your own has none)",
                    )
                })?;
                Self::Shared(
                    RateLimiter::builder(quota).algorithm(s.algorithm).clock(s.clock.clone()).build()?,
                )
            }
        })
    }
}

pub(super) struct KeyedTier<K, Store, F> {
    pub(super) limiter: KeyedRateLimiter<K, Store>,
    pub(super) key: F,
    pub(super) unkeyed: UnkeyedRt,
    pub(super) warn: WarnOnce,
}

impl<K, Store, F> KeyedTier<K, Store, F> {
    /// The answer for a request without a key; `shared` decides under the shared limit.
    #[cold]
    fn unkeyed<T>(&self, tier: &str, shared: impl FnOnce(&RateLimiter) -> Result<T, Denied>) -> Answer<T> {
        self.warn.warn_unkeyed(tier);
        match &self.unkeyed {
            UnkeyedRt::Reject => Answer::Missing,
            UnkeyedRt::PassThrough => Answer::Skip,
            UnkeyedRt::Shared(l) => Answer::Decided(shared(l), 0),
        }
    }
}

impl<Req, K, Store, F> KeyedRuntime<Req> for KeyedTier<K, Store, F>
where
    K: Send + Sync + 'static,
    Store: KeyedStore<K>,
    F: Fn(&Req) -> Option<K> + Send + Sync,
{
    #[inline]
    fn acquire(
        &self,
        req: &Req,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
        tier: &str,
    ) -> Answer<Grant> {
        let Some(key) = (self.key)(req) else {
            return self.unkeyed(tier, |l| {
                l.acquire(cost, now, max_wait).map(|g| g.with_slot(Arc::new(SharedSlot)))
            });
        };
        let store = self.limiter.store();
        let before = store.evictions();
        let result = store.acquire(&key, cost, now, max_wait);
        Answer::Decided(result, store.evictions().saturating_sub(before))
    }

    fn refund(&self, grant: Grant) {
        if let (UnkeyedRt::Shared(l), Some(slot)) = (&self.unkeyed, grant.slot()) {
            if slot.is::<SharedSlot>() {
                l.refund(grant);
                return;
            }
        }
        self.limiter.store().refund(grant);
    }

    fn queues(&self) -> bool {
        self.limiter.store().queues()
    }

    fn probe(&self, req: &Req, cost: u32, now: Instant, max_wait: Option<Duration>) -> Answer<()> {
        let Some(key) = (self.key)(req) else {
            return match &self.unkeyed {
                UnkeyedRt::Reject => Answer::Missing,
                UnkeyedRt::PassThrough => Answer::Skip,
                UnkeyedRt::Shared(l) => Answer::Decided(l.probe(cost, now, max_wait), 0),
            };
        };
        Answer::Decided(self.limiter.store().probe(&key, cost, now, max_wait), 0)
    }

    #[inline]
    fn check(&self, req: &Req, cost: u32, tier: &str) -> Answer<()> {
        let Some(key) = (self.key)(req) else {
            return self.unkeyed(tier, |l| l.try_acquire(cost));
        };
        let store = self.limiter.store();
        let before = store.evictions();
        let result = store.check(&key, cost);
        Answer::Decided(result, store.evictions().saturating_sub(before))
    }

    fn view(&self) -> Arc<dyn KeyedView> {
        let shared = match &self.unkeyed {
            UnkeyedRt::Shared(l) => Some(l.clone()),
            _ => None,
        };
        Arc::new(StoreView::<K, Store> { store: self.limiter.store_arc().clone(), shared, _key: PhantomData })
    }
}

/// Type-erased access to a keyed store, for the handle.
pub(crate) trait KeyedView: Send + Sync {
    fn status(&self, key: &dyn Any, now: Instant) -> Option<Status>;
    fn len(&self) -> usize;
    fn evictions(&self) -> u64;
    fn overflows(&self) -> u64;
    fn sweep(&self) -> usize;
    fn set_quota(&self, quota: Quota) -> Result<(), ConfigError>;
}

struct StoreView<K, Store> {
    store: Arc<Store>,
    /// The shared limit of unkeyed requests, which a quota change also changes.
    shared: Option<RateLimiter>,
    _key: PhantomData<fn(&K)>,
}

impl<K: 'static, Store: KeyedStore<K>> KeyedView for StoreView<K, Store> {
    fn status(&self, key: &dyn Any, now: Instant) -> Option<Status> {
        key.downcast_ref::<K>().and_then(|k| self.store.status(k, now))
    }

    fn len(&self) -> usize {
        self.store.keys()
    }

    fn evictions(&self) -> u64 {
        self.store.evictions()
    }

    fn overflows(&self) -> u64 {
        self.store.overflows()
    }

    fn sweep(&self) -> usize {
        self.store.sweep()
    }

    fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        self.store.set_quota(quota)?;
        match &self.shared {
            Some(l) => l.set_quota(quota),
            None => Ok(()),
        }
    }
}

/// A tier as the handle sees it.
pub(crate) struct TierView {
    pub(crate) name: Arc<str>,
    pub(crate) kind: ViewKind,
}

pub(crate) enum ViewKind {
    Direct(RateLimiter),
    Keyed(Arc<dyn KeyedView>),
}
