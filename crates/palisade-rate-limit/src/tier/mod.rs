//! [`Tier`]: one limit among those a [`RateLimitLayer`](crate::RateLimitLayer) applies; its
//! run-time form (what the service asks) is in [`runtime`].

mod runtime;

pub(crate) use runtime::{Answer, KeyedRuntime, TierRt, TierView, ViewKind};
use runtime::{KeyedTier, KindRt, UnkeyedRt};

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use palisade_core::clock::Clock;
use palisade_core::config::ConfigError;
use palisade_core::keyed::{Unkeyed, WarnOnce};

use crate::algorithm::Algorithm;
use crate::limiter::{KeyedRateLimiter, KeyedRateLimiterBuilder, RateLimiter};
use crate::quota::Quota;
use crate::store::KeyedStore;

pub(crate) type Predicate<Req> = Arc<dyn Fn(&Req) -> bool + Send + Sync>;
type KeyedFactory<Req> =
    Box<dyn FnOnce(&Resolved) -> Result<Box<dyn KeyedRuntime<Req>>, ConfigError> + Send + Sync>;

/// One limit of a [`RateLimitLayer`](crate::RateLimitLayer): global or per key, optionally
/// applying only to some requests.
///
/// A request passes the layer only when every tier that applies to it admits it; when a
/// later tier refuses, what earlier tiers admitted is given back.
///
/// ```
/// use palisade_core::keyed::Unkeyed;
/// use palisade_rate_limit::{Quota, Tier};
///
/// struct Req { user: Option<u64>, write: bool }
///
/// let per_user: Tier<Req> = Tier::keyed(Quota::per_minute(100), |r: &Req| r.user)
///     .name("per_user")
///     .when_unkeyed(Unkeyed::Shared); // anonymous requests share one limit
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

/// Settings of a tier; `None` takes the layer's.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) max_keys: Option<usize>,
    pub(crate) when_unkeyed: Option<Unkeyed>,
}

/// What the layer gives every tier that does not choose its own.
#[derive(Debug)]
pub(crate) struct Defaults<'a> {
    pub(crate) algorithm: Algorithm,
    pub(crate) max_keys: usize,
    pub(crate) when_unkeyed: Unkeyed,
    pub(crate) clock: &'a Clock,
}

/// A keyed tier's settings once the layer's defaults are applied.
pub(crate) struct Resolved {
    pub(crate) algorithm: Algorithm,
    pub(crate) max_keys: usize,
    pub(crate) when_unkeyed: Unkeyed,
    pub(crate) clock: Clock,
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
        Self { name: None, settings: Settings::default(), when: None, source }
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
    /// `"per_key"`). Memory is bounded by [`max_keys`](Self::max_keys); a request for which
    /// `key` gives `None` is handled as [`when_unkeyed`](Self::when_unkeyed) says.
    pub fn keyed<K, F>(quota: Quota, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    {
        Self::keyed_with(key, Some(quota), move |b| b.quota(quota))
    }

    /// One limit per key, with a quota chosen per key (e.g. by plan) when the key is first
    /// seen. [`Unkeyed::Shared`] needs one quota, so this tier refuses it at build.
    pub fn keyed_by<QuotaFn, K, F>(quota: QuotaFn, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
        QuotaFn: Fn(&K) -> Quota + Send + Sync + 'static,
    {
        Self::keyed_with(key, None, move |b| b.quota_by_key(quota))
    }

    fn keyed_with<K, F, C>(key: F, quota: Option<Quota>, configure: C) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
        C: FnOnce(KeyedRateLimiterBuilder<K>) -> KeyedRateLimiterBuilder<K> + Send + Sync + 'static,
    {
        Self::from_source(Source::Keyed(Box::new(move |s: &Resolved| {
            let limiter = configure(KeyedRateLimiter::<K>::builder())
                .algorithm(s.algorithm)
                .clock(s.clock.clone())
                .max_keys(s.max_keys)
                .build()?;
            let unkeyed = UnkeyedRt::new(s, quota)?;
            Ok(Box::new(KeyedTier { limiter, key, unkeyed, warn: WarnOnce::new() })
                as Box<dyn KeyedRuntime<Req>>)
        })))
    }

    /// One limit per key from a keyed limiter you keep, over any [`KeyedStore`]. The tier's
    /// `algorithm` and `max_keys` settings do not apply, and [`Unkeyed::Shared`] is refused
    /// at build (the store holds the quotas).
    pub fn keyed_limiter<K, Store, F>(limiter: KeyedRateLimiter<K, Store>, key: F) -> Self
    where
        K: Send + Sync + 'static,
        Store: KeyedStore<K>,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    {
        Self::from_source(Source::Keyed(Box::new(move |s: &Resolved| {
            let unkeyed = UnkeyedRt::new(s, None)?;
            Ok(Box::new(KeyedTier { limiter, key, unkeyed, warn: WarnOnce::new() })
                as Box<dyn KeyedRuntime<Req>>)
        })))
    }

    /// The tier's name, in events and in the handle.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The algorithm (default: the layer's, itself token bucket by default).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.settings.algorithm = Some(algorithm);
        self
    }

    /// Keyed tiers: the most keys tracked (default: the layer's
    /// [`max_keys`](crate::RateLimitConfig::max_keys), 100,000); see
    /// [`LocalStore`](crate::LocalStore) for when keys are forgotten and what happens when
    /// all are in use.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.settings.max_keys = Some(max_keys);
        self
    }

    /// Keyed tiers: what a request whose key function gives `None` does (default: the
    /// layer's [`when_unkeyed`](crate::RateLimitConfig::when_unkeyed), [`Unkeyed::Reject`]).
    /// [`Reject`](Unkeyed::Reject) refuses it with
    /// [`KeyMissing`](palisade_core::rejection::KeyMissing), [`PassThrough`](Unkeyed::PassThrough)
    /// leaves it unlimited by this tier, [`Shared`](Unkeyed::Shared) puts every unkeyed request
    /// under one limit of the tier's quota. The first such request logs one warning.
    pub fn when_unkeyed(mut self, when_unkeyed: Unkeyed) -> Self {
        self.settings.when_unkeyed = Some(when_unkeyed);
        self
    }

    /// Applies the tier only to requests for which `when` returns `true` (e.g. writes, a
    /// route, an operation).
    pub fn when<When>(mut self, when: When) -> Self
    where
        When: Fn(&Req) -> bool + Send + Sync + 'static,
    {
        self.when = Some(Arc::new(when));
        self
    }

    pub(crate) fn build(self, defaults: &Defaults<'_>) -> Result<(TierRt<Req>, TierView), ConfigError> {
        let settings = self.settings;
        let algorithm = settings.algorithm.unwrap_or(defaults.algorithm);
        let (kind, view, default_name) = match self.source {
            Source::Quota(q) => {
                let l = RateLimiter::builder(q).algorithm(algorithm).clock(defaults.clock.clone()).build()?;
                (KindRt::Direct(l.clone()), ViewKind::Direct(l), "global")
            }
            Source::Limiter(l) => (KindRt::Direct(l.clone()), ViewKind::Direct(l), "global"),
            Source::Keyed(factory) => {
                let resolved = Resolved {
                    algorithm,
                    max_keys: settings.max_keys.unwrap_or(defaults.max_keys),
                    when_unkeyed: settings.when_unkeyed.unwrap_or(defaults.when_unkeyed),
                    clock: defaults.clock.clone(),
                };
                let rt = factory(&resolved)?;
                let view = rt.view();
                (KindRt::Keyed(rt), ViewKind::Keyed(view), "per_key")
            }
        };
        let name = self.name.unwrap_or_else(|| Arc::from(default_name));
        Ok((TierRt { name: name.clone(), when: self.when, kind }, TierView { name, kind: view }))
    }
}
