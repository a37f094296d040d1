//! Fan-out / fan-in: one request to several services (or split into parts) at once, the
//! results merged by a strategy.
//!
//! [A `FanOut`](crate::fan::FanOut) sends a clone of each request to every branch service
//! concurrently; [`FanOut::split`] builds [a `Split`](crate::fan::Split), which splits each
//! request into parts and sends every part to a clone of one service. The results meet in a
//! [`Merge`] strategy:
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

mod future;
mod strategy;

use std::fmt;
use std::task::{Context, Poll};

use futures_util::stream::FuturesUnordered;
use palisade_core::{BoxError, ConfigError};
use tower_service::Service;

use crate::error::FanOutError;

pub use self::future::{FanOutFuture, Indexed};
pub use self::strategy::{
    all, all_settled, first_success, quorum, reduce, Aggregate, All, AllSettled, AllState, FirstSuccess,
    Merge, Quorum, QuorumState, Reduce, Strategy,
};
use palisade_core::service::ReadyCall;

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
                        calls.push(Indexed::new(index, branch.service.call(r)));
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
        FanOutFuture::new(calls, self.merge.clone(), state, decided)
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
    type Future = FanOutFuture<ReadyCall<S, I::Item>, M, S::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FanOutError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let calls: FuturesUnordered<_> = (self.splitter)(req)
            .into_iter()
            .enumerate()
            .map(|(index, part)| Indexed::new(index, ReadyCall::new(self.service.clone(), part)))
            .collect();
        let decided = match self.merge.validate(calls.len()) {
            Ok(()) => None,
            Err(e) => Some(Err(FanOutError::new(vec![(0, e.into())], 0))),
        };
        let state = self.merge.start(calls.len());
        FanOutFuture::new(calls, self.merge.clone(), state, decided)
    }
}
