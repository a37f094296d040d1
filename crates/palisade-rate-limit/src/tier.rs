//! [`Tier`]: one limit among those a [`RateLimitLayer`](crate::RateLimitLayer) applies.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use tokio::time::Instant;

use crate::algorithm::{Algorithm, Denied, Status};
use crate::clock::Clock;
use crate::limiter::{KeyedRateLimiter, RateLimiter};
use crate::quota::Quota;
use crate::store::{Grant, KeyedStore};

type Predicate<Req> = Arc<dyn Fn(&Req) -> bool + Send + Sync>;
type KeyedFactory<Req> =
    Box<dyn FnOnce(&Settings) -> Result<Box<dyn KeyedRuntime<Req>>, ConfigError> + Send + Sync>;

/// One limit of a [`RateLimitLayer`](crate::RateLimitLayer): global or per key, optionally
/// applying only to some requests.
///
/// A request passes the layer only when every tier that applies to it admits it; when a
/// later tier refuses, what earlier tiers admitted is given back.
///
/// ```
/// use palisade_rate_limit::{Quota, Tier};
///
/// struct Req { user: u64, write: bool }
///
/// let per_user: Tier<Req> = Tier::keyed(Quota::per_minute(100), |r: &Req| r.user).name("per_user");
/// let writes: Tier<Req> = Tier::new(Quota::per_second(5)).name("writes").when(|r: &Req| r.write);
/// let global: Tier<Req> = Tier::new(Quota::per_minute(10_000)).name("global");
/// # let _ = (per_user, writes, global);
/// ```
pub struct Tier<Req> {
    name: Option<Arc<str>>,
    settings: Settings,
    when: Option<Predicate<Req>>,
    source: Source<Req>,
}

/// Settings for tiers the layer builds itself.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) clock: Clock,
    pub(crate) algorithm: Option<Algorithm>,
    max_keys: Option<usize>,
}

enum Source<Req> {
    Quota(Quota),
    Limiter(RateLimiter),
    Keyed(KeyedFactory<Req>),
}

impl<Req> fmt::Debug for Tier<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Quota(q) => format!("{q:?}"),
            Source::Limiter(l) => format!("{l:?}"),
            Source::Keyed(_) => "keyed".to_owned(),
        };
        f.debug_struct("Tier")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("when", &self.when.is_some())
            .field("source", &source)
            .finish()
    }
}

impl<Req: 'static> Tier<Req> {
    fn from_source(source: Source<Req>) -> Self {
        Self {
            name: None,
            settings: Settings { clock: Clock::default(), algorithm: None, max_keys: None },
            when: None,
            source,
        }
    }

    /// One limit for all requests (default name `"global"`).
    pub fn new(quota: Quota) -> Self {
        Self::from_source(Source::Quota(quota))
    }

    /// One limit for all requests, from a limiter you keep (to check or inspect it
    /// elsewhere). The tier's `algorithm` setting does not apply.
    pub fn limiter(limiter: RateLimiter) -> Self {
        Self::from_source(Source::Limiter(limiter))
    }

    /// One limit per key taken from the request, each with `quota` (default name
    /// `"per_key"`). Memory is bounded by [`max_keys`](Self::max_keys).
    pub fn keyed<K, F>(quota: Quota, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> K + Send + Sync + 'static,
    {
        Self::keyed_with(key, move |b| b.quota(quota))
    }

    /// One limit per key, with a quota chosen per key (e.g. by plan) when the key is first
    /// seen.
    pub fn keyed_by<K, F, Q>(quota: Q, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> K + Send + Sync + 'static,
        Q: Fn(&K) -> Quota + Send + Sync + 'static,
    {
        Self::keyed_with(key, move |b| b.quota_by_key(quota))
    }

    fn keyed_with<K, F, C>(key: F, configure: C) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> K + Send + Sync + 'static,
        C: FnOnce(crate::limiter::KeyedRateLimiterBuilder<K>) -> crate::limiter::KeyedRateLimiterBuilder<K>
            + Send
            + Sync
            + 'static,
    {
        Self::from_source(Source::Keyed(Box::new(move |s: &Settings| {
            let mut b = configure(KeyedRateLimiter::<K>::builder())
                .algorithm(s.algorithm.unwrap_or_default())
                .clock(s.clock.clone());
            if let Some(n) = s.max_keys {
                b = b.max_keys(n);
            }
            let limiter = b.build()?;
            Ok(Box::new(KeyedTier { limiter, key }) as Box<dyn KeyedRuntime<Req>>)
        })))
    }

    /// One limit per key from a keyed limiter you keep, over any [`KeyedStore`]. The tier's
    /// `algorithm` and `max_keys` settings do not apply.
    pub fn keyed_limiter<K, St, F>(limiter: KeyedRateLimiter<K, St>, key: F) -> Self
    where
        K: Send + Sync + 'static,
        St: KeyedStore<K>,
        F: Fn(&Req) -> K + Send + Sync + 'static,
    {
        Self::from_source(Source::Keyed(Box::new(move |_: &Settings| {
            Ok(Box::new(KeyedTier { limiter, key }) as Box<dyn KeyedRuntime<Req>>)
        })))
    }

    /// The tier's name, in events and in the handle.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The algorithm (default: the layer builder's, itself token bucket by default).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.settings.algorithm = Some(algorithm);
        self
    }

    /// Keyed tiers: the most keys tracked (default 100,000); see
    /// [`LocalStore`](crate::LocalStore) for when keys are forgotten and what happens when
    /// all are in use.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.settings.max_keys = Some(max_keys);
        self
    }

    /// Applies the tier only to requests for which `when` returns `true` (e.g. writes, a
    /// route, an operation).
    pub fn when<P>(mut self, when: P) -> Self
    where
        P: Fn(&Req) -> bool + Send + Sync + 'static,
    {
        self.when = Some(Arc::new(when));
        self
    }

    pub(crate) fn build(
        self,
        default_algorithm: Algorithm,
        clock: &Clock,
    ) -> Result<(TierRt<Req>, TierView), ConfigError> {
        let mut settings = self.settings;
        settings.algorithm = Some(settings.algorithm.unwrap_or(default_algorithm));
        settings.clock = clock.clone();
        let (kind, view, default_name) = match self.source {
            Source::Quota(q) => {
                let l = RateLimiter::builder(q)
                    .algorithm(settings.algorithm.unwrap_or_default())
                    .clock(settings.clock.clone())
                    .build()?;
                (KindRt::Direct(l.clone()), ViewKind::Direct(l), "global")
            }
            Source::Limiter(l) => (KindRt::Direct(l.clone()), ViewKind::Direct(l), "global"),
            Source::Keyed(factory) => {
                let rt = factory(&settings)?;
                let view = rt.view();
                (KindRt::Keyed(rt), ViewKind::Keyed(view), "per_key")
            }
        };
        let name = self.name.unwrap_or_else(|| Arc::from(default_name));
        Ok((TierRt { name: name.clone(), when: self.when, kind }, TierView { name, kind: view }))
    }
}

// === runtime ===

pub(crate) struct TierRt<Req> {
    pub(crate) name: Arc<str>,
    when: Option<Predicate<Req>>,
    kind: KindRt<Req>,
}

enum KindRt<Req> {
    Direct(RateLimiter),
    Keyed(Box<dyn KeyedRuntime<Req>>),
}

impl<Req> TierRt<Req> {
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

    pub(crate) fn needs_request(&self) -> bool {
        self.when.is_some() || matches!(self.kind, KindRt::Keyed(_))
    }

    /// `None` when the tier does not apply to the request. Without a request (admission in
    /// `poll_ready`) only global unconditional tiers exist.
    #[inline]
    pub(crate) fn acquire(
        &self,
        req: Option<&Req>,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> Option<(Result<Grant, Denied>, u64)> {
        if let (Some(when), Some(req)) = (&self.when, req) {
            if !when(req) {
                return None;
            }
        }
        match (&self.kind, req) {
            (KindRt::Direct(l), _) => Some((l.acquire(cost, now, max_wait), 0)),
            (KindRt::Keyed(k), Some(req)) => Some(k.acquire(req, cost, now, max_wait)),
            (KindRt::Keyed(_), None) => None,
        }
    }

    pub(crate) fn refund(&self, grant: &Grant) {
        match &self.kind {
            KindRt::Direct(l) => l.refund(grant),
            KindRt::Keyed(k) => k.refund(grant),
        }
    }
}

pub(crate) trait KeyedRuntime<Req>: Send + Sync {
    /// The decision and the number of keys evicted to make room.
    fn acquire(
        &self,
        req: &Req,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> (Result<Grant, Denied>, u64);
    fn refund(&self, grant: &Grant);
    fn view(&self) -> Arc<dyn KeyedView>;
    /// Admits `cost` now without waiting and without anything to refund; also the number
    /// of keys evicted to make room.
    fn check(&self, req: &Req, cost: u32) -> (Result<(), Denied>, u64);
    /// Whether the store queues requests in reject mode (a leaky bucket).
    fn queues(&self) -> bool;
}

struct KeyedTier<K, St, F> {
    limiter: KeyedRateLimiter<K, St>,
    key: F,
}

impl<Req, K, St, F> KeyedRuntime<Req> for KeyedTier<K, St, F>
where
    K: Send + Sync + 'static,
    St: KeyedStore<K>,
    F: Fn(&Req) -> K + Send + Sync,
{
    #[inline]
    fn acquire(
        &self,
        req: &Req,
        cost: u32,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> (Result<Grant, Denied>, u64) {
        let key = (self.key)(req);
        let store = self.limiter.store();
        let before = store.evictions();
        let result = store.acquire(&key, cost, now, max_wait);
        (result, store.evictions().saturating_sub(before))
    }

    fn refund(&self, grant: &Grant) {
        self.limiter.store().refund(grant);
    }

    fn queues(&self) -> bool {
        self.limiter.store().queues()
    }

    #[inline]
    fn check(&self, req: &Req, cost: u32) -> (Result<(), Denied>, u64) {
        let key = (self.key)(req);
        let store = self.limiter.store();
        let before = store.evictions();
        let result = store.check(&key, cost);
        (result, store.evictions().saturating_sub(before))
    }

    fn view(&self) -> Arc<dyn KeyedView> {
        Arc::new(StoreView::<K, St> { store: self.limiter.store_arc().clone(), _key: PhantomData })
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

struct StoreView<K, St> {
    store: Arc<St>,
    _key: PhantomData<fn(&K)>,
}

impl<K: 'static, St: KeyedStore<K>> KeyedView for StoreView<K, St> {
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
        self.store.set_quota(quota)
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
