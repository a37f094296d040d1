//! [`ResponseFuture`] of the rate limit service.
//!
//! # Example
//!
//! A keyed limit in wait mode waits in the response future:
//!
//! ```
//! use std::time::Duration;
//! use palisade_rate_limit::{Quota, RateLimitLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use palisade_core::when_full::WhenFull;
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(10).burst(1))
//!     .keyed(|user: &u32| Some(*user))
//!     .when_full(WhenFull::wait(Duration::from_secs(1)))
//!     .build()
//!     .unwrap();
//! let svc = layer.layer(service_fn(|u: u32| async move { Ok::<_, std::convert::Infallible>(u) }));
//! let start = tokio::time::Instant::now();
//! svc.clone().oneshot(7).await.unwrap();
//! svc.clone().oneshot(7).await.unwrap(); // waited for the next token
//! assert_eq!(start.elapsed(), Duration::from_millis(100));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::service::within;
use crate::shared::{Grants, Refusal, Shared};

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit): the inner call, a refusal,
    /// or (keyed and weighted limits in wait mode, leaky bucket) a wait for admission
    /// followed by the inner call. Dropped while waiting, it gives its reservation back.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: FutState<S, Req>,
    }
}

pin_project! {
    #[project = FutStateProj]
    enum FutState<S, Req>
    where
        S: Service<Req>,
    {
        Called { #[pin] future: S::Future },
        Rejected { error: Option<BoxError> },
        Waiting { wait: Box<Wait<S, Req>> },
    }
}

/// A request waiting for admission, with the (ready) service that will take it.
struct Wait<S, Req> {
    svc: Option<S>,
    req: Option<Req>,
    sleep: Pin<Box<Sleep>>,
    pending: Pending<Req>,
}

/// What a waiting request holds; gives back an unused reservation on drop.
pub(crate) struct Pending<Req> {
    shared: Arc<Shared<Req>>,
    grants: Option<Grants>,
    cost: u32,
    deadline: Option<Instant>,
}

impl<Req> Pending<Req> {
    pub(crate) fn new(
        shared: Arc<Shared<Req>>,
        grants: Option<Grants>,
        cost: u32,
        deadline: Option<Instant>,
    ) -> Self {
        Self { shared, grants, cost, deadline }
    }
}

impl<Req> Drop for Pending<Req> {
    fn drop(&mut self) {
        if let Some(grants) = self.grants.take() {
            self.shared.refund(grants);
        }
    }
}

impl<S, Req> Wait<S, Req> {
    fn poll_admit(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let pending = &mut self.pending;
            if pending.grants.take().is_some() {
                pending.shared.core.admitted.increment();
                return Poll::Ready(Ok(()));
            }
            let Some(req) = self.req.as_ref() else {
                return Poll::Ready(Err("rate limit response future polled after completion".into()));
            };
            let shared = &*pending.shared;
            let now = Instant::now();
            match shared.acquire(
                Some(req),
                pending.cost,
                now,
                crate::shared::max_wait(now, pending.deadline),
                false,
            ) {
                Ok((_spent, ready)) if ready <= now => {
                    shared.core.admitted.increment();
                    return Poll::Ready(Ok(()));
                }
                Ok((grants, ready)) => {
                    pending.grants = Some(grants);
                    self.sleep.as_mut().reset(ready);
                }
                Err(Refusal::Later { after }) if within(now, after, pending.deadline) => {
                    self.sleep.as_mut().reset(crate::limiter::add(now, after));
                }
                Err(refusal) => return Poll::Ready(Err(shared.reject(refusal))),
            }
        }
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn called(future: S::Future) -> Self {
        Self { state: FutState::Called { future } }
    }

    pub(crate) fn rejected(error: BoxError) -> Self {
        Self { state: FutState::Rejected { error: Some(error) } }
    }

    pub(crate) fn waiting(svc: S, req: Req, pending: Pending<Req>, until: Instant) -> Self {
        let wait = Wait {
            svc: Some(svc),
            req: Some(req),
            sleep: Box::pin(tokio::time::sleep_until(until)),
            pending,
        };
        Self { state: FutState::Waiting { wait: Box::new(wait) } }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                FutStateProj::Called { future } => return future.poll(cx).map_err(Into::into),
                FutStateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "rate limit response future polled after completion".into())));
                }
                FutStateProj::Waiting { wait } => match ready!(wait.poll_admit(cx)) {
                    Ok(()) => match (wait.svc.take(), wait.req.take()) {
                        (Some(mut svc), Some(req)) => {
                            let future = svc.call(req);
                            this.state.set(FutState::Called { future });
                        }
                        _ => this.state.set(FutState::Rejected { error: None }),
                    },
                    Err(error) => this.state.set(FutState::Rejected { error: Some(error) }),
                },
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            FutState::Called { .. } => "called",
            FutState::Rejected { .. } => "rejected",
            FutState::Waiting { .. } => "waiting",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
