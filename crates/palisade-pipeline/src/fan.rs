//! Fan-out / fan-in: one request to several services (or split into parts) at once, the
//! results merged by a strategy.
//!
//! [`FanOut`] sends a clone of each request to every branch service concurrently;
//! [`FanOut::split`] builds a [`Split`], which splits each request into parts and sends every
//! part to a clone of one service. The results meet in a [`Merge`] strategy:
//!
//! - [`all`]: every response in branch order, or a [`FanOutError`] listing every error with
//!   its branch index;
//! - [`first_success`]: the first response to succeed (the other calls are dropped);
//! - [`quorum`]: the first `n` successes (with their branch index), failing as soon as `n`
//!   can no longer be reached;
//! - [`reduce`]: your own fold over `(index, result)`, which may stop early;
//! - [`all_settled`]: every success and every error by branch index (an [`Aggregate`]),
//!   never failing as a whole.
//!
//! Branches of different types go through `tower::util::BoxCloneService` (or
//! `tower::util::Either`).
//!
//! # Example
//!
//! ```
//! use palisade_pipeline::fan::{self, FanOut};
//! use tower::{service_fn, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let replica = |id: u32| service_fn(move |key: &'static str| async move {
//!     if id == 1 { Err("replica 1 is down") } else { Ok(format!("{key}@{id}")) }
//! });
//! let reads = FanOut::new([replica(0), replica(1), replica(2)], fan::quorum(2)).unwrap();
//! let answers = reads.oneshot("user:7").await.unwrap();
//! assert_eq!(answers.len(), 2);
//! # }
//! ```
//!
//! # Backpressure
//!
//! `FanOut::poll_ready` waits until every branch is ready (or has failed readiness: that
//! failure becomes the branch's result). `Split` calls each part on a clone polled ready
//! inside the response future, so its `poll_ready` is always ready. Dropping the response
//! future drops every call still running.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use palisade_core::{BoxError, ConfigError};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::FanOutError;

/// A merge strategy's settings check, independent of the response type.
pub trait Strategy {
    /// Checks the strategy against the number of branches (or parts).
    fn validate(&self, branches: usize) -> Result<(), ConfigError> {
        let _ = branches;
        Ok(())
    }
}

/// How the results of a fan-out become one response.
pub trait Merge<R>: Strategy {
    /// The merged response.
    type Output;
    /// What the strategy keeps while results arrive.
    type State;

    /// The state for `branches` results.
    fn start(&self, branches: usize) -> Self::State;

    /// One branch's result arrived; `Some` decides the outcome now (the calls still running
    /// are dropped).
    fn push(
        &self,
        state: &mut Self::State,
        index: usize,
        result: Result<R, BoxError>,
    ) -> Option<Result<Self::Output, FanOutError>>;

    /// Every result arrived without `push` deciding.
    fn finish(&self, state: Self::State) -> Result<Self::Output, FanOutError>;
}

// === strategies ===

/// Every response, in branch order; see [`all`].
#[derive(Clone, Copy, Debug, Default)]
pub struct All;

/// Collect every result: `Ok` with every response in branch order, or a [`FanOutError`] with
/// every error and its branch index.
pub fn all() -> All {
    All
}

/// The state of [`All`].
#[derive(Debug)]
pub struct AllState<R> {
    results: Vec<Option<R>>,
    errors: Vec<(usize, BoxError)>,
}

impl Strategy for All {}

impl<R> Merge<R> for All {
    type Output = Vec<R>;
    type State = AllState<R>;

    fn start(&self, branches: usize) -> AllState<R> {
        AllState { results: (0..branches).map(|_| None).collect(), errors: Vec::new() }
    }

    fn push(
        &self,
        state: &mut AllState<R>,
        index: usize,
        result: Result<R, BoxError>,
    ) -> Option<Result<Vec<R>, FanOutError>> {
        match result {
            Ok(r) => {
                if let Some(slot) = state.results.get_mut(index) {
                    *slot = Some(r);
                }
            }
            Err(e) => state.errors.push((index, e)),
        }
        None
    }

    fn finish(&self, mut state: AllState<R>) -> Result<Vec<R>, FanOutError> {
        let succeeded = state.results.iter().filter(|r| r.is_some()).count();
        if state.errors.is_empty() {
            Ok(state.results.into_iter().flatten().collect())
        } else {
            state.errors.sort_by_key(|(i, _)| *i);
            Err(FanOutError::new(state.errors, succeeded))
        }
    }
}

/// The first success; see [`first_success`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FirstSuccess;

/// The first response to succeed; the other calls are dropped. Fails with every error when
/// all branches fail.
pub fn first_success() -> FirstSuccess {
    FirstSuccess
}

impl Strategy for FirstSuccess {}

impl<R> Merge<R> for FirstSuccess {
    type Output = R;
    type State = Vec<(usize, BoxError)>;

    fn start(&self, _branches: usize) -> Self::State {
        Vec::new()
    }

    fn push(
        &self,
        errors: &mut Self::State,
        index: usize,
        result: Result<R, BoxError>,
    ) -> Option<Result<R, FanOutError>> {
        match result {
            Ok(r) => Some(Ok(r)),
            Err(e) => {
                errors.push((index, e));
                None
            }
        }
    }

    fn finish(&self, mut errors: Self::State) -> Result<R, FanOutError> {
        errors.sort_by_key(|(i, _)| *i);
        Err(FanOutError::new(errors, 0))
    }
}

/// A quorum of successes; see [`quorum`].
#[derive(Clone, Copy, Debug)]
pub struct Quorum {
    needed: usize,
}

/// The first `needed` successes, each with its branch index, in the order they arrived.
/// Fails (with [`FanOutError::needed`] set) as soon as too many branches failed for
/// `needed` to be reached. `needed` must be from 1 to the number of branches.
pub fn quorum(needed: usize) -> Quorum {
    Quorum { needed }
}

/// The state of [`Quorum`].
#[derive(Debug)]
pub struct QuorumState<R> {
    branches: usize,
    successes: Vec<(usize, R)>,
    errors: Vec<(usize, BoxError)>,
}

impl Strategy for Quorum {
    fn validate(&self, branches: usize) -> Result<(), ConfigError> {
        if self.needed == 0 || self.needed > branches {
            return Err(ConfigError::new(
                "quorum",
                format!("must be from 1 to the number of branches ({branches}), got {}", self.needed),
            ));
        }
        Ok(())
    }
}

impl<R> Merge<R> for Quorum {
    type Output = Vec<(usize, R)>;
    type State = QuorumState<R>;

    fn start(&self, branches: usize) -> QuorumState<R> {
        // `needed` is the user's number: never an allocation size (a quorum above the
        // number of parts of a `Split` is refused when called, after this).
        QuorumState { branches, successes: Vec::with_capacity(self.needed.min(branches)), errors: Vec::new() }
    }

    fn push(
        &self,
        state: &mut QuorumState<R>,
        index: usize,
        result: Result<R, BoxError>,
    ) -> Option<Result<Self::Output, FanOutError>> {
        match result {
            Ok(r) => {
                state.successes.push((index, r));
                if state.successes.len() >= self.needed {
                    return Some(Ok(std::mem::take(&mut state.successes)));
                }
            }
            Err(e) => {
                state.errors.push((index, e));
                if state.errors.len() > state.branches.saturating_sub(self.needed) {
                    let errors = std::mem::take(&mut state.errors);
                    return Some(Err(FanOutError::quorum(errors, state.successes.len(), self.needed)));
                }
            }
        }
        None
    }

    fn finish(&self, state: QuorumState<R>) -> Result<Self::Output, FanOutError> {
        if state.successes.len() >= self.needed {
            Ok(state.successes)
        } else {
            Err(FanOutError::quorum(state.errors, state.successes.len(), self.needed))
        }
    }
}

/// A custom fold; see [`reduce`].
#[derive(Clone)]
pub struct Reduce<A, F> {
    init: A,
    f: F,
}

impl<A: fmt::Debug, F> fmt::Debug for Reduce<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reduce").field("init", &self.init).finish_non_exhaustive()
    }
}

/// Folds the results as they arrive, starting from `init`:
/// `f(acc, branch_index, result)` returns `ControlFlow::Continue(acc)` to wait for more, or
/// `ControlFlow::Break(acc)` to answer now (the calls still running are dropped).
pub fn reduce<A, F>(init: A, f: F) -> Reduce<A, F> {
    Reduce { init, f }
}

impl<A, F> Strategy for Reduce<A, F> {}

impl<R, A, F> Merge<R> for Reduce<A, F>
where
    A: Clone,
    F: Fn(A, usize, Result<R, BoxError>) -> ControlFlow<A, A>,
{
    type Output = A;
    type State = Option<A>;

    fn start(&self, _branches: usize) -> Option<A> {
        Some(self.init.clone())
    }

    fn push(
        &self,
        state: &mut Option<A>,
        index: usize,
        result: Result<R, BoxError>,
    ) -> Option<Result<A, FanOutError>> {
        let acc = state.take()?;
        match (self.f)(acc, index, result) {
            ControlFlow::Continue(acc) => {
                *state = Some(acc);
                None
            }
            ControlFlow::Break(acc) => Some(Ok(acc)),
        }
    }

    fn finish(&self, state: Option<A>) -> Result<A, FanOutError> {
        Ok(state.unwrap_or_else(|| self.init.clone()))
    }
}

/// Every success and every error, by branch index; see [`all_settled`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AllSettled;

/// Keeps every result: the fan-out answers `Ok` with an [`Aggregate`] of the successes and
/// the errors, each with its branch index, whatever failed (the seeds'
/// `parallelAggregate`: completed, errors, all-completed). Unlike [`all`], successes are
/// never dropped because another branch failed. A branch that *panics* is not an error
/// here: the fan-out runs on the caller's task, and the panic reaches the caller as with
/// `futures::join_all` (wrap a branch that may panic in its own task to get an error).
///
/// ```
/// use palisade_pipeline::fan::{self, FanOut};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let replica = |id: u32| service_fn(move |key: &'static str| async move {
///     if id == 1 { Err("replica 1 is down") } else { Ok(format!("{key}@{id}")) }
/// });
/// let reads = FanOut::new([replica(0), replica(1), replica(2)], fan::all_settled()).unwrap();
/// let aggregate = reads.oneshot("user:7").await.unwrap();
/// assert_eq!(aggregate.completed, [(0, "user:7@0".to_string()), (2, "user:7@2".to_string())]);
/// assert_eq!(aggregate.errors.len(), 1);
/// assert_eq!(aggregate.errors[0].0, 1);
/// assert!(!aggregate.all_completed());
/// # }
/// ```
pub fn all_settled() -> AllSettled {
    AllSettled
}

/// What [`all_settled`] answers: every success and every error with its branch index,
/// each list in branch order.
#[derive(Debug)]
#[non_exhaustive]
pub struct Aggregate<R> {
    /// The successful responses, with their branch index.
    pub completed: Vec<(usize, R)>,
    /// The errors, with their branch index.
    pub errors: Vec<(usize, BoxError)>,
}

impl<R> Aggregate<R> {
    /// Whether every branch succeeded.
    pub fn all_completed(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Strategy for AllSettled {}

impl<R> Merge<R> for AllSettled {
    type Output = Aggregate<R>;
    type State = Aggregate<R>;

    fn start(&self, _branches: usize) -> Aggregate<R> {
        // Grown as results arrive: the branch count may come from a split of user input.
        Aggregate { completed: Vec::new(), errors: Vec::new() }
    }

    fn push(
        &self,
        state: &mut Aggregate<R>,
        index: usize,
        result: Result<R, BoxError>,
    ) -> Option<Result<Aggregate<R>, FanOutError>> {
        match result {
            Ok(r) => state.completed.push((index, r)),
            Err(e) => state.errors.push((index, e)),
        }
        None
    }

    fn finish(&self, mut state: Aggregate<R>) -> Result<Aggregate<R>, FanOutError> {
        state.completed.sort_by_key(|(i, _)| *i);
        state.errors.sort_by_key(|(i, _)| *i);
        Ok(state)
    }
}

// === FanOut ===

enum Readiness {
    NotReady,
    Ready,
    Failed(BoxError),
}

struct Branch<S> {
    service: S,
    readiness: Readiness,
}

/// Calls every branch service with a clone of the request, concurrently, and merges the
/// results with a [`Merge`] strategy. See the [module docs](self).
///
/// # Clone
///
/// A clone holds clones of every branch and starts un-ready.
pub struct FanOut<S, M> {
    branches: Vec<Branch<S>>,
    merge: M,
}

impl<S, M: fmt::Debug> fmt::Debug for FanOut<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut").field("branches", &self.branches.len()).field("merge", &self.merge).finish()
    }
}

impl<S: Clone, M: Clone> Clone for FanOut<S, M> {
    fn clone(&self) -> Self {
        Self {
            branches: self
                .branches
                .iter()
                .map(|b| Branch { service: b.service.clone(), readiness: Readiness::NotReady })
                .collect(),
            merge: self.merge.clone(),
        }
    }
}

impl<S, M: Strategy> FanOut<S, M> {
    /// A fan-out to `services` merged by `merge`.
    ///
    /// # Errors
    ///
    /// No service, or a strategy that does not fit the number of services (a quorum larger
    /// than it).
    pub fn new(services: impl IntoIterator<Item = S>, merge: M) -> Result<Self, ConfigError> {
        let branches: Vec<_> =
            services.into_iter().map(|service| Branch { service, readiness: Readiness::NotReady }).collect();
        if branches.is_empty() {
            return Err(ConfigError::new("services", "a fan-out needs at least one service"));
        }
        merge.validate(branches.len())?;
        Ok(Self { branches, merge })
    }

    /// Splits each request with `split` and calls a clone of `service` with every part,
    /// concurrently; merges the results with `merge` (indexes are part positions).
    pub fn split<F>(service: S, split: F, merge: M) -> Split<S, F, M> {
        Split { service, splitter: split, merge }
    }

    /// The branch services, in branch order.
    pub fn services(&self) -> impl Iterator<Item = &S> {
        self.branches.iter().map(|b| &b.service)
    }

    /// The branch services, by value.
    pub fn into_inner(self) -> Vec<S> {
        self.branches.into_iter().map(|b| b.service).collect()
    }
}

impl<S, M, Req> Service<Req> for FanOut<S, M>
where
    Req: Clone,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    M: Merge<S::Response> + Clone,
{
    type Response = M::Output;
    type Error = FanOutError;
    type Future = FanOutFuture<S::Future, M, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FanOutError>> {
        let mut pending = false;
        for branch in &mut self.branches {
            if matches!(branch.readiness, Readiness::NotReady) {
                match branch.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => branch.readiness = Readiness::Ready,
                    Poll::Ready(Err(e)) => branch.readiness = Readiness::Failed(e.into()),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let n = self.branches.len();
        let mut state = self.merge.start(n);
        let mut decided = None;
        let calls = FuturesUnordered::new();
        let mut req = Some(req);
        for (index, branch) in self.branches.iter_mut().enumerate() {
            let result = match std::mem::replace(&mut branch.readiness, Readiness::NotReady) {
                Readiness::Ready => {
                    let r = if index + 1 == n { req.take() } else { req.clone() };
                    if let Some(r) = r {
                        calls.push(Indexed { index, fut: branch.service.call(r) });
                    }
                    continue;
                }
                Readiness::Failed(e) => e,
                Readiness::NotReady => "fan-out branch called before it was ready".into(),
            };
            if decided.is_none() {
                decided = self.merge.push(&mut state, index, Err(result));
            }
        }
        FanOutFuture { calls, merge: self.merge.clone(), state: Some(state), decided }
    }
}

/// Splits each request into parts, calls a clone of one service with every part
/// concurrently, and merges the results; built by [`FanOut::split`].
///
/// # Clone
///
/// A clone holds a clone of the service; parts are always called on fresh clones polled
/// ready inside the response future.
#[derive(Clone)]
pub struct Split<S, F, M> {
    service: S,
    splitter: F,
    merge: M,
}

impl<S, F, M: fmt::Debug> fmt::Debug for Split<S, F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split").field("merge", &self.merge).finish_non_exhaustive()
    }
}

impl<S, F, M, Req, I> Service<Req> for Split<S, F, M>
where
    F: FnMut(Req) -> I,
    I: IntoIterator,
    S: Service<I::Item> + Clone,
    S::Error: Into<BoxError>,
    M: Merge<S::Response> + Clone,
{
    type Response = M::Output;
    type Error = FanOutError;
    type Future = FanOutFuture<Oneshot<S, I::Item>, M, S::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FanOutError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let calls: FuturesUnordered<_> = (self.splitter)(req)
            .into_iter()
            .enumerate()
            .map(|(index, part)| Indexed {
                index,
                fut: Oneshot {
                    state: OneshotState::NotReady { service: self.service.clone(), req: Some(part) },
                },
            })
            .collect();
        let decided = match self.merge.validate(calls.len()) {
            Ok(()) => None,
            Err(e) => Some(Err(FanOutError::new(vec![(0, e.into())], 0))),
        };
        FanOutFuture { state: Some(self.merge.start(calls.len())), calls, merge: self.merge.clone(), decided }
    }
}

pin_project! {
    /// The response future of [`FanOut`] and [`Split`].
    pub struct FanOutFuture<F, M, R>
    where
        M: Merge<R>,
    {
        calls: FuturesUnordered<Indexed<F>>,
        merge: M,
        state: Option<M::State>,
        decided: Option<Result<M::Output, FanOutError>>,
    }
}

impl<F, M: Merge<R>, R> fmt::Debug for FanOutFuture<F, M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOutFuture").field("running", &self.calls.len()).finish_non_exhaustive()
    }
}

impl<F, M, R, E> Future for FanOutFuture<F, M, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
    M: Merge<R>,
{
    type Output = Result<M::Output, FanOutError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(decided) = this.decided.take() {
            return Poll::Ready(decided);
        }
        loop {
            match std::task::ready!(this.calls.poll_next_unpin(cx)) {
                Some((index, result)) => {
                    if let Some(state) = this.state.as_mut() {
                        if let Some(decided) = this.merge.push(state, index, result.map_err(Into::into)) {
                            this.state.take();
                            return Poll::Ready(decided);
                        }
                    }
                }
                None => {
                    return Poll::Ready(match this.state.take() {
                        Some(state) => this.merge.finish(state),
                        None => Err(FanOutError::new(vec![(0, "fan-out polled after completion".into())], 0)),
                    });
                }
            }
        }
    }
}

pin_project! {
    /// A call tagged with its branch index.
    #[derive(Debug)]
    pub struct Indexed<F> {
        index: usize,
        #[pin]
        fut: F,
    }
}

impl<F> Indexed<F> {
    pub(crate) fn new(index: usize, fut: F) -> Self {
        Self { index, fut }
    }
}

impl<F: Future> Future for Indexed<F> {
    type Output = (usize, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.fut.poll(cx));
        Poll::Ready((*this.index, out))
    }
}

pin_project! {
    /// One call on a service clone: waits for it to be ready, then calls it.
    pub struct Oneshot<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: OneshotState<S, Req>,
    }
}

pin_project! {
    #[project = OneshotProj]
    enum OneshotState<S, Req>
    where
        S: Service<Req>,
    {
        NotReady { service: S, req: Option<Req> },
        Called { #[pin] fut: S::Future },
    }
}

impl<S: Service<Req>, Req> fmt::Debug for Oneshot<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oneshot").finish_non_exhaustive()
    }
}

impl<S, Req> Future for Oneshot<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                OneshotProj::NotReady { service, req } => {
                    std::task::ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    // Only after a panic in `call` (the request is gone, no call made): an
                    // answer, never a `Pending` that nothing would wake.
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("fan-out part polled after its call failed".into()));
                    };
                    let fut = service.call(req);
                    state.set(OneshotState::Called { fut });
                }
                OneshotProj::Called { fut } => return fut.poll(cx).map_err(Into::into),
            }
        }
    }
}
