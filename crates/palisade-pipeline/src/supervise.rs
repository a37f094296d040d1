//! Supervision: a stage rebuilt with fresh state after it fails N times in a row, as an
//! actor supervisor restarts a failing child.
//!
//! [`Supervised`] is a [`Service`] made from a `MakeService` (any `Service<T>` whose
//! response is the stage's service — a closure through [`make_fn`]
//! works too). Its calls are judged by a palisade-core [`Classify`]er; after
//! `restart_after` failures in a row the current service is dropped (calls in flight
//! finish) and the next `poll_ready` makes a fresh one. A failed make is an error of that
//! `poll_ready`; the next `poll_ready` tries again. It fits anywhere a service does — as a
//! pipeline stage in particular.
//!
//! User code that panics — the make service or its future, an incarnation's `poll_ready`,
//! `call` or response future, the classifier — answers with palisade-core's
//! [`Panicked`] (component `"stage"`, name `"supervised"`,
//! the site) instead of unwinding into the caller: a panicking make is a failed make, and
//! a panicking call counts as a failure of its incarnation, so one that always panics is
//! restarted like one that always fails.
//!
//! # Example: a stage that heals
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use palisade_pipeline::supervise::{make_fn, Supervised};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let made = Arc::new(AtomicU32::new(0));
//! let m = made.clone();
//! // Each incarnation breaks after its second call (a leak, a poisoned cache...).
//! let make = make_fn(move || {
//!     m.fetch_add(1, Ordering::SeqCst);
//!     let calls = Arc::new(AtomicU32::new(0));
//!     async move {
//!         Ok::<_, std::io::Error>(service_fn(move |x: u32| {
//!             let n = calls.fetch_add(1, Ordering::SeqCst);
//!             async move { if n >= 2 { Err(std::io::Error::other("broken")) } else { Ok(x) } }
//!         }))
//!     }
//! });
//! let mut stage = Supervised::builder().restart_after(1).build(make)?;
//! let mut answers = Vec::new();
//! for x in 0..6 {
//!     answers.push(stage.ready().await?.call(x).await.is_ok());
//! }
//! assert_eq!(answers, [true, true, false, true, true, false]);
//! assert_eq!(made.load(Ordering::SeqCst), 2);
//! // Two restarts; the third incarnation is made by the next `poll_ready`.
//! assert_eq!(stage.restarts(), 2);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::config::{ensure, ConfigError};
use palisade_core::panic::{catch, Panicked};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower_service::Service;

pub use palisade_core::make_fn::{make_fn, MakeFn};

use crate::error::NotReady;

/// Every option of a [`Supervised`] service: the builder's storage
/// ([`Supervised::builder`]) and, with the feature `serde`, the settings-file form
/// (`{"restart_after": 5}`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SupervisedConfig {
    /// Failures in a row (as the classifier judges them) that get the service rebuilt (at
    /// least 1). Default 3.
    pub restart_after: u32,
}

impl Default for SupervisedConfig {
    fn default() -> Self {
        Self { restart_after: 3 }
    }
}

impl SupervisedConfig {
    /// Checks every option.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `restart_after` when it is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.restart_after >= 1, "restart_after", "must be at least 1")
    }
}

/// Builds a [`Supervised`]: a [`SupervisedConfig`] (restart after 3 failures in a row) and
/// the classifier that judges calls ([`DefaultClassifier`]).
#[derive(Clone, Debug)]
pub struct SupervisedBuilder<C = DefaultClassifier> {
    config: SupervisedConfig,
    classifier: C,
}

impl From<SupervisedConfig> for SupervisedBuilder {
    fn from(config: SupervisedConfig) -> Self {
        Self { config, classifier: DefaultClassifier }
    }
}

/// The `MakeService` type `Supervised::builder` is named on (any would do).
type NoMake = MakeFn<fn() -> std::future::Ready<Result<(), BoxError>>>;

impl Supervised<NoMake, (), ()> {
    /// A builder with the defaults of [`SupervisedConfig`] and the [`DefaultClassifier`].
    pub fn builder() -> SupervisedBuilder {
        SupervisedBuilder::from(SupervisedConfig::default())
    }
}

impl<C> SupervisedBuilder<C> {
    /// Sets [`SupervisedConfig::restart_after`].
    pub fn restart_after(mut self, failures: u32) -> Self {
        self.config.restart_after = failures;
        self
    }

    /// Judges calls with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> SupervisedBuilder<C2> {
        SupervisedBuilder { config: self.config, classifier }
    }

    /// A supervised service made by `make` (called with `()`).
    pub fn build<M>(self, make: M) -> Result<Supervised<M, (), M::Response, C>, ConfigError>
    where
        M: Service<()>,
    {
        self.build_with_target(make, ())
    }

    /// A supervised service made by `make` called with clones of `target`.
    pub fn build_with_target<M, T>(
        self,
        make: M,
        target: T,
    ) -> Result<Supervised<M, T, M::Response, C>, ConfigError>
    where
        M: Service<T>,
    {
        self.config.validate()?;
        Ok(Supervised {
            make,
            target,
            state: State::Empty,
            health: Arc::new(Health {
                state: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
                threshold: self.config.restart_after,
            }),
            classifier: Arc::new(self.classifier),
        })
    }
}

#[derive(Debug)]
struct Health {
    /// The generation (high 32 bits, wrapping; bumped at each restart: incarnations of an
    /// older generation are rebuilt) and the failures in a row of that generation (low 32
    /// bits), in one word so that a verdict is checked against its generation and counted
    /// in one step: a call of a retired incarnation finishing while another thread
    /// restarts can never count against the new one.
    state: AtomicU64,
    /// Restarts so far (not wrapping).
    restarts: AtomicU64,
    threshold: u32,
}

impl Health {
    fn generation(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> 32
    }

    fn failures_in_a_row(&self) -> u32 {
        // The low half of the word.
        (self.state.load(Ordering::Relaxed) & u64::from(u32::MAX)) as u32
    }

    /// Records one verdict on a call of generation `generation` (calls of a retired
    /// incarnation no longer count).
    fn record(&self, generation: u64, failed: Option<bool>) {
        let Some(failed) = failed else { return };
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current >> 32 != generation {
                return;
            }
            let count = (current & u64::from(u32::MAX)) as u32;
            let (next, restart) = if !failed {
                (generation << 32, false)
            } else if count.saturating_add(1) >= self.threshold {
                (((generation + 1) & u64::from(u32::MAX)) << 32, true)
            } else {
                ((generation << 32) | u64::from(count + 1), false)
            };
            if next == current {
                return;
            }
            match self.state.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if restart {
                        self.restarts.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(seen) => current = seen,
            }
        }
    }
}

enum State<S, F> {
    Empty,
    Making(Pin<Box<F>>),
    Ready(S, u64),
}

/// A service rebuilt from its `MakeService` after repeated failures; see the
/// [module docs](self).
///
/// # Clone
///
/// Clones share the supervision (failure count, restarts) but each makes and owns its
/// own incarnation on its first `poll_ready` — so a pipeline stage with concurrency `n`
/// runs up to `n` incarnations, and a restart rebuilds every one of them.
pub struct Supervised<M, T, S, C = DefaultClassifier>
where
    M: Service<T, Response = S>,
{
    make: M,
    target: T,
    state: State<S, M::Future>,
    health: Arc<Health>,
    classifier: Arc<C>,
}

impl<M, T, S, C> Clone for Supervised<M, T, S, C>
where
    M: Service<T, Response = S> + Clone,
    T: Clone,
{
    fn clone(&self) -> Self {
        Self {
            make: self.make.clone(),
            target: self.target.clone(),
            state: State::Empty,
            health: self.health.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<M, T, S, C> fmt::Debug for Supervised<M, T, S, C>
where
    M: Service<T, Response = S>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervised")
            .field("restarts", &self.health.restarts.load(Ordering::Relaxed))
            .field("failures_in_a_row", &self.health.failures_in_a_row())
            .finish_non_exhaustive()
    }
}

impl<M, T, S, C> Supervised<M, T, S, C>
where
    M: Service<T, Response = S>,
{
    /// Restarts so far (times the failure threshold was reached).
    pub fn restarts(&self) -> u64 {
        self.health.restarts.load(Ordering::Relaxed)
    }

    /// Failures in a row of the current incarnation.
    pub fn failures_in_a_row(&self) -> u32 {
        self.health.failures_in_a_row()
    }
}

impl<M, T, S, C, Req> Service<Req> for Supervised<M, T, S, C>
where
    M: Service<T, Response = S>,
    M::Error: Into<BoxError>,
    T: Clone,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SupervisedFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            let current = self.health.generation();
            if matches!(self.state, State::Ready(_, g) if g != current) {
                // Drop the failing incarnation; calls in flight finish on their own.
                self.state = State::Empty;
            }
            match &mut self.state {
                State::Empty => {
                    // The make service is user code: a panic is a failed make (the next
                    // `poll_ready` tries again), never a panic of the caller.
                    let (make, target) = (&mut self.make, &self.target);
                    match catch(|| make.poll_ready(cx)) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(ready)) => ready.map_err(Into::into)?,
                        Err(payload) => return Poll::Ready(Err(panicked(payload, "make"))),
                    }
                    match catch(|| make.call(target.clone())) {
                        Ok(fut) => self.state = State::Making(Box::pin(fut)),
                        Err(payload) => return Poll::Ready(Err(panicked(payload, "make"))),
                    }
                }
                State::Making(fut) => {
                    // A make future that panicked is not polled again ("`async fn` resumed
                    // after panicking" at every later `poll_ready`): a failed make.
                    let made = match catch(|| fut.as_mut().poll(cx)) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(made)) => made.map_err(Into::into),
                        Err(payload) => Err(panicked(payload, "make")),
                    };
                    match made {
                        // A fresh incarnation belongs to the generation now (a restart while it
                        // was being made does not retire it).
                        Ok(service) => self.state = State::Ready(service, current),
                        Err(e) => {
                            self.state = State::Empty;
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                State::Ready(service, generation) => {
                    // An incarnation panicking in `poll_ready` failed: counted as such, so
                    // that one that always panics is restarted.
                    return match catch(|| service.poll_ready(cx)) {
                        Ok(ready) => ready.map_err(Into::into),
                        Err(payload) => {
                            self.health.record(*generation, Some(true));
                            Poll::Ready(Err(panicked(payload, "poll_ready")))
                        }
                    };
                }
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let (health, classifier) = (self.health.clone(), self.classifier.clone());
        match &mut self.state {
            State::Ready(service, generation) => match catch(|| service.call(request)) {
                Ok(fut) => SupervisedFuture {
                    inner: Some(fut),
                    generation: *generation,
                    health,
                    classifier,
                    error: None,
                },
                // A panicking `call` is a failed call of this incarnation.
                Err(payload) => {
                    health.record(*generation, Some(true));
                    let error = Some(panicked(payload, "call"));
                    SupervisedFuture { inner: None, generation: *generation, health, classifier, error }
                }
            },
            // `call` without a ready service: a typed error, never a panic.
            _ => SupervisedFuture { inner: None, generation: 0, health, classifier, error: None },
        }
    }
}

/// The error for user code of a supervised service that panicked at `site`.
fn panicked(payload: Box<dyn std::any::Any + Send>, site: &'static str) -> BoxError {
    Box::new(Panicked::from_payload("stage", "supervised", payload).with_site(site))
}

pin_project! {
    /// The response future of [`Supervised`]: reports each outcome to the supervisor.
    pub struct SupervisedFuture<F, C> {
        #[pin]
        inner: Option<F>,
        generation: u64,
        health: Arc<Health>,
        classifier: Arc<C>,
        // The answer of a `call` that panicked.
        error: Option<BoxError>,
    }
}

impl<F, C> fmt::Debug for SupervisedFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisedFuture").finish_non_exhaustive()
    }
}

impl<F, C, R, E> Future for SupervisedFuture<F, C>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
    C: Classify<R, BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(this.error.take().unwrap_or_else(|| NotReady.into())));
        };
        // The response future and the classifier are user code: a panic fails this call
        // with a typed error and counts as a failure of the incarnation (one that always
        // panics is restarted), and the finished future is not polled again.
        let polled = catch(|| inner.poll(cx));
        if matches!(polled, Ok(Poll::Pending)) {
            return Poll::Pending;
        }
        this.inner.set(None);
        let classifier = &**this.classifier;
        let (result, failed) = match polled {
            Ok(Poll::Ready(result)) => {
                let result = result.map_err(Into::into);
                match catch(|| classifier.classify(&result)) {
                    Ok(v) => (result, if v.is_ignored() { None } else { Some(v.is_failure()) }),
                    Err(payload) => (Err(panicked(payload, "classify")), Some(true)),
                }
            }
            Err(payload) => (Err(panicked(payload, "response")), Some(true)),
            Ok(Poll::Pending) => return Poll::Pending,
        };
        this.health.record(*this.generation, failed);
        Poll::Ready(result)
    }
}
