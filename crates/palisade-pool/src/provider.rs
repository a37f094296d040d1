//! Provider discovery and selection: a [`Select`] service over a tower
//! [`Discover`] stream of heterogeneous providers.
//!
//! Each [`Provider`] is a service plus metadata (cost, capabilities — anything, through
//! [`ProviderMeta`]). `Select` keeps the pool's load tracking for each one (calls in
//! flight, peak-EWMA latency, failures as a palisade-core classifier judges them) and, for
//! every request:
//!
//! 1. keeps the providers that pass the [filter](SelectBuilder::filter);
//! 2. orders them by the [`Ranking`] (lower score first; [`Ranking::Best`],
//!    [`Ranking::Cheapest`], [`Ranking::Fastest`], [`Ranking::Balanced`] or your own),
//!    healthy ones before unhealthy ones (a provider is unhealthy after
//!    [`unhealthy_after`](SelectBuilder::unhealthy_after) failures in a row, for
//!    [`down_for`](SelectBuilder::down_for); then it is tried again);
//! 3. calls the first; on a classified failure it falls back to the next, up to
//!    [`max_attempts`](SelectBuilder::max_attempts), and answers the last result.
//!
//! Providers are added and removed while requests run: a request keeps the providers it
//! ranked; new requests see the new set.
//!
//! Fallback here walks a ranking computed per request, so palisade-fallback's chain (a
//! fixed list built with the layer) is not used; the failure test is the same
//! palisade-core [`Classify`] vocabulary.
//!
//! # Example
//!
//! ```
//! use palisade_pool::provider::{Meta, Provider, Ranking, Select};
//! use tower::discover::Change;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! // Heterogeneous providers share one service type (box them: `BoxCloneSyncService`).
//! let provider = |name: &'static str, cost: f64, up: bool, capability: &'static str| {
//!     let svc = service_fn(move |q: String| async move {
//!         if up { Ok(format!("{name}: {q}")) } else { Err(std::io::Error::other("down")) }
//!     });
//!     Provider::new(svc, Meta::new(cost).capability(capability))
//! };
//! let providers = vec![
//!     Ok::<_, std::convert::Infallible>(Change::Insert("premium", provider("premium", 10.0, true, "chat"))),
//!     Ok(Change::Insert("budget", provider("budget", 1.0, false, "chat"))),
//!     Ok(Change::Insert("vision", provider("vision", 0.5, true, "vision"))),
//! ];
//! let mut select = Select::builder()
//!     .name("llm")
//!     .ranking(Ranking::Cheapest)
//!     .filter(|m: &Meta| m.has("chat"))
//!     .build(futures_util::stream::iter(providers))?;
//! // The cheapest provider lacks "chat"; the cheapest chat provider fails, so the call
//! // falls back to the next one.
//! let answer = select.ready().await?.call("hi".into()).await?;
//! assert_eq!(answer, "premium: hi");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::time::deadline_after;
use palisade_core::BoxError;
use tokio::time::Instant;
use tower::discover::{Change, Discover};
use tower_service::Service;

use crate::error::NoProvider;
use crate::member::{duration_nanos, peak_ewma};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === metadata ===

/// What the built-in rankings read from a provider's metadata.
pub trait ProviderMeta: Send + Sync + 'static {
    /// The provider's cost per call, in any unit (default 0).
    fn cost(&self) -> f64 {
        0.0
    }
}

/// Ready-made metadata: a cost and a set of capabilities.
///
/// ```
/// use palisade_pool::provider::Meta;
/// let m = Meta::new(2.5).capability("vision");
/// assert!(m.has("vision") && !m.has("audio"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    cost: f64,
    capabilities: Vec<Arc<str>>,
}

impl Meta {
    /// Metadata with this cost and no capabilities.
    pub fn new(cost: f64) -> Self {
        Self { cost, capabilities: Vec::new() }
    }

    /// Adds a capability.
    pub fn capability(mut self, name: impl Into<Arc<str>>) -> Self {
        self.capabilities.push(name.into());
        self
    }

    /// Whether the provider has the capability.
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| &**c == name)
    }
}

impl ProviderMeta for Meta {
    fn cost(&self) -> f64 {
        self.cost
    }
}

/// One provider as discovery yields it: a service and its metadata.
#[derive(Clone, Debug)]
pub struct Provider<S, M> {
    service: S,
    meta: M,
}

impl<S, M> Provider<S, M> {
    /// A provider.
    pub fn new(service: S, meta: M) -> Self {
        Self { service, meta }
    }
}

/// What `Select` observed of a provider.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProviderStats {
    /// Calls in flight.
    pub in_flight: usize,
    /// Peak-EWMA latency (the builder's `default_rtt` before the first call).
    pub latency: Duration,
    /// Calls made.
    pub calls: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Failures since the last success.
    pub failures_in_a_row: u32,
    /// Not marked down.
    pub healthy: bool,
}

impl ProviderStats {
    /// `failures / calls` (0 before the first call).
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }
}

/// How providers are ordered: each gets a score, lower first (ties keep discovery order).
pub enum Ranking<M> {
    /// Lowest failure rate, then lowest latency.
    Best,
    /// Lowest [`cost`](ProviderMeta::cost), then lowest latency.
    Cheapest,
    /// Lowest peak-EWMA latency.
    Fastest,
    /// Lowest `latency × (in_flight + 1) × (1 + cost)`: the pool's peak-EWMA load, weighed
    /// by cost.
    Balanced,
    /// Your score.
    Custom(Arc<dyn Fn(&M, &ProviderStats) -> f64 + Send + Sync>),
}

impl<M> Clone for Ranking<M> {
    fn clone(&self) -> Self {
        match self {
            Self::Best => Self::Best,
            Self::Cheapest => Self::Cheapest,
            Self::Fastest => Self::Fastest,
            Self::Balanced => Self::Balanced,
            Self::Custom(f) => Self::Custom(f.clone()),
        }
    }
}

impl<M> fmt::Debug for Ranking<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Best => "Best",
            Self::Cheapest => "Cheapest",
            Self::Fastest => "Fastest",
            Self::Balanced => "Balanced",
            Self::Custom(_) => "Custom",
        })
    }
}

impl<M: ProviderMeta> Ranking<M> {
    /// A ranking by `score` (lower first).
    pub fn custom<F>(score: F) -> Self
    where
        F: Fn(&M, &ProviderStats) -> f64 + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(score))
    }

    fn score(&self, meta: &M, s: &ProviderStats) -> f64 {
        let latency = s.latency.as_secs_f64();
        let score = match self {
            Self::Best => s.failure_rate() * 1e9 + latency,
            Self::Cheapest => meta.cost() * 1e9 + latency,
            Self::Fastest => latency,
            Self::Balanced => latency * (s.in_flight as f64 + 1.0) * (1.0 + meta.cost().max(0.0)),
            Self::Custom(f) => f(meta, s),
        };
        // A NaN score (a custom ranking's, or a NaN cost) sorts last.
        if score.is_nan() {
            f64::INFINITY
        } else {
            score
        }
    }
}

// === tracking ===

#[derive(Debug)]
struct TrackerState {
    in_flight: usize,
    rtt_nanos: f64,
    stamp: Instant,
    calls: u64,
    failures: u64,
    in_a_row: u32,
    down_until: Option<Instant>,
}

#[derive(Debug)]
struct Tracker {
    state: Mutex<TrackerState>,
    /// Set when discovery removed (or replaced) the provider: a call falling back down
    /// its ranking skips it.
    removed: std::sync::atomic::AtomicBool,
}

impl Tracker {
    fn stats(&self, now: Instant) -> ProviderStats {
        let s = lock(&self.state);
        ProviderStats {
            in_flight: s.in_flight,
            latency: Duration::from_nanos(s.rtt_nanos as u64),
            calls: s.calls,
            failures: s.failures,
            failures_in_a_row: s.in_a_row,
            healthy: s.down_until.is_none_or(|until| now >= until),
        }
    }
}

/// Counts a call in flight until it ends or is dropped.
struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

struct Entry<K, S, M> {
    key: K,
    service: S,
    meta: Arc<M>,
    tracker: Arc<Tracker>,
}

// === builder ===

/// Builds a [`Select`]. Defaults: name `"select"`, [`Ranking::Balanced`], no filter,
/// unhealthy after 3 failures in a row for 10 s, every provider tried in turn, 100 ms
/// default latency, 10 s peak-EWMA decay, [`DefaultClassifier`].
pub struct SelectBuilder<M, C = DefaultClassifier> {
    name: Arc<str>,
    ranking: Ranking<M>,
    filter: Option<Arc<dyn Fn(&M) -> bool + Send + Sync>>,
    unhealthy_after: u32,
    down_for: Duration,
    max_attempts: usize,
    default_rtt: Duration,
    decay: Duration,
    classifier: C,
}

impl<M, C> fmt::Debug for SelectBuilder<M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectBuilder")
            .field("name", &self.name)
            .field("ranking", &self.ranking)
            .field("unhealthy_after", &self.unhealthy_after)
            .field("down_for", &self.down_for)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<M: ProviderMeta, C> SelectBuilder<M, C> {
    /// The name in errors and logs.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The order providers are tried in.
    pub fn ranking(mut self, ranking: Ranking<M>) -> Self {
        self.ranking = ranking;
        self
    }

    /// Only providers whose metadata passes `filter` are tried.
    pub fn filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&M) -> bool + Send + Sync + 'static,
    {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Failures in a row that mark a provider down (at least 1).
    pub fn unhealthy_after(mut self, failures: u32) -> Self {
        self.unhealthy_after = failures;
        self
    }

    /// How long a provider stays down before it is tried again first (not zero;
    /// saturating).
    pub fn down_for(mut self, duration: Duration) -> Self {
        self.down_for = duration;
        self
    }

    /// Providers tried per request at most (at least 1).
    pub fn max_attempts(mut self, n: usize) -> Self {
        self.max_attempts = n;
        self
    }

    /// Latency assumed before a provider's first call, and the peak-EWMA decay.
    pub fn peak_ewma(mut self, default_rtt: Duration, decay: Duration) -> Self {
        self.default_rtt = default_rtt;
        self.decay = decay;
        self
    }

    /// Judges calls with `classifier`: its failures fall back and count against health.
    pub fn classifier<C2>(self, classifier: C2) -> SelectBuilder<M, C2> {
        SelectBuilder {
            name: self.name,
            ranking: self.ranking,
            filter: self.filter,
            unhealthy_after: self.unhealthy_after,
            down_for: self.down_for,
            max_attempts: self.max_attempts,
            default_rtt: self.default_rtt,
            decay: self.decay,
            classifier,
        }
    }

    /// A `Select` over the providers `discover` yields.
    pub fn build<D, K, S>(self, discover: D) -> Result<Select<D, K, S, M, C>, ConfigError>
    where
        D: Discover<Key = K, Service = Provider<S, M>>,
    {
        ensure(self.unhealthy_after >= 1, "unhealthy_after", "must be at least 1")?;
        ensure_nonzero_duration("down_for", self.down_for)?;
        ensure(self.max_attempts >= 1, "max_attempts", "must be at least 1")?;
        ensure_nonzero_duration("peak_ewma.decay", self.decay)?;
        Ok(Select {
            shared: Arc::new(SelectShared {
                discover: Mutex::new(Discovery { stream: Box::pin(discover), ended: false }),
                providers: Mutex::new(Vec::new()),
                name: self.name,
                ranking: self.ranking,
                filter: self.filter,
                unhealthy_after: self.unhealthy_after,
                down_for: self.down_for,
                max_attempts: self.max_attempts,
                default_rtt: self.default_rtt,
                decay: self.decay,
                classifier: Arc::new(self.classifier),
            }),
        })
    }
}

// === impl Select ===

struct Discovery<D> {
    stream: Pin<Box<D>>,
    ended: bool,
}

struct SelectShared<D, K, S, M, C> {
    discover: Mutex<Discovery<D>>,
    providers: Mutex<Vec<Entry<K, S, M>>>,
    name: Arc<str>,
    ranking: Ranking<M>,
    filter: Option<Arc<dyn Fn(&M) -> bool + Send + Sync>>,
    unhealthy_after: u32,
    down_for: Duration,
    max_attempts: usize,
    default_rtt: Duration,
    decay: Duration,
    classifier: Arc<C>,
}

/// Sends each request to the top-ranked healthy provider and falls back down the
/// ranking; see the [module docs](self).
///
/// # Backpressure
///
/// `poll_ready` takes in discovery changes (an error of the discovery stream fails it) and
/// is then ready: a provider's readiness is awaited inside the response future, and a
/// provider whose `poll_ready` fails counts as a failed attempt.
///
/// # Clone
///
/// Clones share the providers, their stats and the discovery stream.
pub struct Select<D, K, S, M, C = DefaultClassifier> {
    shared: Arc<SelectShared<D, K, S, M, C>>,
}

impl<D, K, S, M, C> Clone for Select<D, K, S, M, C> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<D, K, S, M, C> fmt::Debug for Select<D, K, S, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("name", &self.shared.name)
            .field("providers", &lock(&self.shared.providers).len())
            .finish_non_exhaustive()
    }
}

impl<M: ProviderMeta> Select<(), (), (), M> {
    /// A builder with the defaults listed on [`SelectBuilder`].
    pub fn builder() -> SelectBuilder<M> {
        SelectBuilder {
            name: Arc::from("select"),
            ranking: Ranking::Balanced,
            filter: None,
            unhealthy_after: 3,
            down_for: Duration::from_secs(10),
            max_attempts: usize::MAX,
            default_rtt: Duration::from_millis(100),
            decay: Duration::from_secs(10),
            classifier: DefaultClassifier,
        }
    }
}

impl<D, K, S, M, C> Select<D, K, S, M, C>
where
    D: Discover<Key = K, Service = Provider<S, M>>,
    D::Error: Into<BoxError>,
    K: PartialEq + Clone,
    M: ProviderMeta,
{
    /// Each provider's key and stats now, in discovery order.
    pub fn providers(&self) -> Vec<(K, ProviderStats)> {
        let now = Instant::now();
        lock(&self.shared.providers).iter().map(|e| (e.key.clone(), e.tracker.stats(now))).collect()
    }

    fn poll_discovery(&self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        let mut d = lock(&self.shared.discover);
        while !d.ended {
            match d.stream.as_mut().poll_discover(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => d.ended = true,
                Poll::Ready(Some(Err(e))) => return Err(e.into()),
                Poll::Ready(Some(Ok(Change::Insert(key, provider)))) => {
                    let tracker = Arc::new(Tracker {
                        state: Mutex::new(TrackerState {
                            in_flight: 0,
                            rtt_nanos: duration_nanos(self.shared.default_rtt) as f64,
                            stamp: Instant::now(),
                            calls: 0,
                            failures: 0,
                            in_a_row: 0,
                            down_until: None,
                        }),
                        removed: std::sync::atomic::AtomicBool::new(false),
                    });
                    let entry =
                        Entry { key, service: provider.service, meta: Arc::new(provider.meta), tracker };
                    let mut providers = lock(&self.shared.providers);
                    match providers.iter().position(|e| e.key == entry.key) {
                        Some(i) => {
                            providers[i].tracker.removed.store(true, std::sync::atomic::Ordering::Release);
                            providers[i] = entry;
                        }
                        None => providers.push(entry),
                    }
                }
                Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                    lock(&self.shared.providers).retain(|e| {
                        let keep = e.key != key;
                        if !keep {
                            e.tracker.removed.store(true, std::sync::atomic::Ordering::Release);
                        }
                        keep
                    });
                }
            }
        }
        Ok(())
    }

    fn ranked(&self) -> Vec<(S, Arc<Tracker>)>
    where
        S: Clone,
    {
        let now = Instant::now();
        let providers = lock(&self.shared.providers);
        let mut ranked: Vec<(bool, f64, usize, S, Arc<Tracker>)> = providers
            .iter()
            .enumerate()
            .filter(|(_, e)| self.shared.filter.as_ref().is_none_or(|f| f(&e.meta)))
            .map(|(i, e)| {
                let stats = e.tracker.stats(now);
                let score = self.shared.ranking.score(&e.meta, &stats);
                (!stats.healthy, score, i, e.service.clone(), e.tracker.clone())
            })
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        ranked.truncate(self.shared.max_attempts);
        ranked.into_iter().map(|(_, _, _, s, t)| (s, t)).collect()
    }
}

/// The response future of [`Select`].
pub type SelectFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<D, K, S, M, C, Req> Service<Req> for Select<D, K, S, M, C>
where
    D: Discover<Key = K, Service = Provider<S, M>>,
    D::Error: Into<BoxError>,
    K: PartialEq + Clone,
    M: ProviderMeta,
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    S::Response: Send + 'static,
    Req: Clone + Send + 'static,
    C: Classify<S::Response, BoxError> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SelectFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(self.poll_discovery(cx))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let candidates = self.ranked();
        let shared = &self.shared;
        let (classifier, name) = (shared.classifier.clone(), shared.name.clone());
        let (unhealthy_after, down_for, decay) = (shared.unhealthy_after, shared.down_for, shared.decay);
        Box::pin(async move {
            let mut last: Option<Result<S::Response, BoxError>> = None;
            for (mut service, tracker) in candidates {
                // Removed by discovery while an earlier candidate was tried: not a fallback
                // any more.
                if tracker.removed.load(std::sync::atomic::Ordering::Acquire) {
                    continue;
                }
                let guard = {
                    lock(&tracker.state).in_flight += 1;
                    InFlight(tracker.clone())
                };
                let started = Instant::now();
                let ready: Result<(), BoxError> =
                    std::future::poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into);
                let result = match ready {
                    Ok(()) => service.call(request.clone()).await.map_err(Into::into),
                    Err(e) => Err(e),
                };
                drop(guard);
                let now = Instant::now();
                let rtt = now.saturating_duration_since(started);
                let verdict = classifier.classify_timed(&result, rtt);
                let failed = !verdict.is_ignored() && verdict.is_failure();
                {
                    let mut s = lock(&tracker.state);
                    let elapsed = duration_nanos(now.saturating_duration_since(s.stamp));
                    s.rtt_nanos = peak_ewma(s.rtt_nanos, rtt, elapsed, decay);
                    s.stamp = now;
                    s.calls += 1;
                    if failed {
                        s.failures += 1;
                        s.in_a_row = s.in_a_row.saturating_add(1);
                        if s.in_a_row >= unhealthy_after {
                            s.down_until = Some(deadline_after(now, down_for));
                        }
                    } else if !verdict.is_ignored() {
                        s.in_a_row = 0;
                        s.down_until = None;
                    }
                }
                if !failed {
                    return result;
                }
                last = Some(result);
            }
            last.unwrap_or_else(|| Err(NoProvider::new(name).into()))
        })
    }
}
