//! Merge strategies: how the results of a fan-out become one response.

use std::fmt;
use std::ops::ControlFlow;

use palisade_core::{BoxError, ConfigError};

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
