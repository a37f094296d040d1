//! [`Select`]: the service that ranks the discovered providers per request and falls back
//! down the ranking.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::panic::{catch, Panicked};
use palisade_core::service::ReadyCall;
use palisade_core::sync::lock;
use palisade_core::time::deadline_after;
use palisade_core::BoxError;
use tokio::time::Instant;
use tower::discover::{Change, Discover};
use tower_service::Service;

use super::config::{SelectBuilder, SelectConfig};
use super::meta::{Provider, ProviderMeta, ProviderSnapshot, Ranking};
use crate::error::NoProvider;
use crate::member::{duration_nanos, peak_ewma};

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
    fn stats(&self, now: Instant) -> ProviderSnapshot {
        let s = lock(&self.state);
        ProviderSnapshot {
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

pub(super) struct Entry<K, S, Metadata> {
    key: K,
    service: S,
    meta: Arc<Metadata>,
    tracker: Arc<Tracker>,
}

pub(super) struct DiscoveryState<Discovery> {
    pub(super) stream: Pin<Box<Discovery>>,
    pub(super) ended: bool,
}

pub(super) struct SelectShared<Discovery, K, S, Metadata, C> {
    pub(super) discover: Mutex<DiscoveryState<Discovery>>,
    pub(super) providers: Mutex<Vec<Entry<K, S, Metadata>>>,
    pub(super) name: Arc<str>,
    pub(super) config: SelectConfig,
    pub(super) ranking: Ranking<Metadata>,
    pub(super) filter: Option<Arc<dyn Fn(&Metadata) -> bool + Send + Sync>>,
    pub(super) classifier: Arc<C>,
}

/// Sends each request to the top-ranked healthy provider and falls back down the
/// ranking; see the [module docs](super).
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
///
/// # User code that panics
///
/// A discovery stream that panics ends discovery: that `poll_ready` fails with
/// palisade-core's [`Panicked`] (component `"discovery"`) and the providers found so far
/// keep serving. A filter, ranking or classifier that panics fails that request alone with
/// a `Panicked` (component `"filter"`, `"ranking"` or `"classifier"`), counting nothing
/// against a provider.
pub struct Select<Discovery, K, S, Metadata, C = DefaultClassifier> {
    shared: Arc<SelectShared<Discovery, K, S, Metadata, C>>,
}

impl<Discovery, K, S, Metadata, C> Clone for Select<Discovery, K, S, Metadata, C> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<Discovery, K, S, Metadata, C> fmt::Debug for Select<Discovery, K, S, Metadata, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("name", &self.shared.name)
            .field("providers", &lock(&self.shared.providers).len())
            .finish_non_exhaustive()
    }
}

impl<Metadata: ProviderMeta> Select<(), (), (), Metadata> {
    /// A builder with the defaults of [`SelectConfig`].
    pub fn builder() -> SelectBuilder<Metadata> {
        SelectBuilder::new()
    }
}

impl<Discovery, K, S, Metadata, C> Select<Discovery, K, S, Metadata, C> {
    pub(super) fn from_shared(shared: Arc<SelectShared<Discovery, K, S, Metadata, C>>) -> Self {
        Self { shared }
    }
}

impl<Discovery, K, S, Metadata, C> Select<Discovery, K, S, Metadata, C>
where
    Discovery: Discover<Key = K, Service = Provider<S, Metadata>>,
    Discovery::Error: Into<BoxError>,
    K: PartialEq + Clone,
    Metadata: ProviderMeta,
{
    /// Each provider's key and stats now, in discovery order.
    pub fn providers(&self) -> Vec<(K, ProviderSnapshot)> {
        let now = Instant::now();
        lock(&self.shared.providers).iter().map(|e| (e.key.clone(), e.tracker.stats(now))).collect()
    }

    fn poll_discovery(&self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        let mut d = lock(&self.shared.discover);
        while !d.ended {
            // The discovery stream is user code: a panic ends discovery (a panicked stream
            // is not polled again) and fails this `poll_ready` with a typed error; the
            // providers found so far keep serving.
            let stream = &mut d.stream;
            let polled = match catch(|| stream.as_mut().poll_discover(cx)) {
                Ok(polled) => polled,
                Err(payload) => {
                    d.ended = true;
                    let name = self.shared.name.clone();
                    return Err(Panicked::from_payload("discovery", name, payload).into());
                }
            };
            match polled {
                Poll::Pending => break,
                Poll::Ready(None) => d.ended = true,
                Poll::Ready(Some(Err(e))) => return Err(e.into()),
                Poll::Ready(Some(Ok(Change::Insert(key, provider)))) => {
                    let tracker = Arc::new(Tracker {
                        state: Mutex::new(TrackerState {
                            in_flight: 0,
                            rtt_nanos: duration_nanos(self.shared.config.peak_ewma_default_rtt) as f64,
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

    /// The candidates in ranking order; `Err` when the filter or the ranking (user code)
    /// panicked.
    fn ranked(&self) -> Result<Vec<(S, Arc<Tracker>)>, Panicked>
    where
        S: Clone,
    {
        let now = Instant::now();
        let providers = lock(&self.shared.providers);
        let (filter, ranking) = (&self.shared.filter, &self.shared.ranking);
        let mut ranked = Vec::new();
        for (i, e) in providers.iter().enumerate() {
            let kept = match filter {
                None => true,
                Some(f) => catch(|| f(&e.meta)).map_err(|p| self.panicked("filter", p))?,
            };
            if kept {
                let stats = e.tracker.stats(now);
                let score =
                    catch(|| ranking.score(&e.meta, &stats)).map_err(|p| self.panicked("ranking", p))?;
                ranked.push((!stats.healthy, score, i, e.service.clone(), e.tracker.clone()));
            }
        }
        drop(providers);
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        ranked.truncate(self.shared.config.max_attempts);
        Ok(ranked.into_iter().map(|(_, _, _, s, t)| (s, t)).collect())
    }

    fn panicked(&self, component: &'static str, payload: Box<dyn std::any::Any + Send>) -> Panicked {
        Panicked::from_payload(component, self.shared.name.clone(), payload)
    }
}

/// The response future of [`Select`].
pub type SelectFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<Discovery, K, S, Metadata, C, Req> Service<Req> for Select<Discovery, K, S, Metadata, C>
where
    Discovery: Discover<Key = K, Service = Provider<S, Metadata>>,
    Discovery::Error: Into<BoxError>,
    K: PartialEq + Clone,
    Metadata: ProviderMeta,
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
        // A panicking filter or ranking fails this request alone.
        let candidates = match self.ranked() {
            Ok(candidates) => candidates,
            Err(panicked) => return Box::pin(std::future::ready(Err(panicked.into()))),
        };
        let shared = &self.shared;
        let (classifier, name) = (shared.classifier.clone(), shared.name.clone());
        let config = &shared.config;
        let (unhealthy_after, down_for, decay) =
            (config.unhealthy_after, config.down_for, config.peak_ewma_decay);
        Box::pin(async move {
            let mut last: Option<Result<S::Response, BoxError>> = None;
            for (service, tracker) in candidates {
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
                // A provider whose `poll_ready` fails counts as a failed attempt.
                let result = ReadyCall::new(service, request.clone()).await.map_err(Into::into);
                drop(guard);
                let now = Instant::now();
                let rtt = now.saturating_duration_since(started);
                // The classifier is user code: a panic answers this request with a typed
                // error and counts nothing against the provider.
                let verdict = match catch(|| classifier.classify_timed(&result, rtt)) {
                    Ok(verdict) => verdict,
                    Err(payload) => {
                        return Err(Panicked::from_payload("classifier", name.clone(), payload).into())
                    }
                };
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
