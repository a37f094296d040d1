use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use palisade_core::classify::eos::Eos;
use palisade_core::classify::{Classify, Outcome};
use palisade_core::rejection::Overloaded;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::limiter::{AdaptivePermit, BacklogSlot};

pin_project! {
    /// The response future of an [`AdaptiveLimit`](crate::AdaptiveLimit): waits in the
    /// backlog if it has to, runs the call holding capacity, gives it back with the call's
    /// outcome. Dropping it at any point leaves the backlog or frees the capacity.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, C>
    where
        S: Service<Req>,
    {
        Waiting {
            svc: Option<S>,
            req: Option<Req>,
            slot: Option<BacklogSlot>,
            sleep: Pin<Box<Sleep>>,
            classifier: Option<C>,
        },
        Running {
            #[pin]
            future: S::Future,
            permit: Option<AdaptivePermit>,
            classifier: Option<C>,
        },
        Rejected {
            rejection: Option<Overloaded>,
        },
    }
}

impl<S: Service<Req>, Req, C> ResponseFuture<S, Req, C> {
    pub(crate) fn running(future: S::Future, permit: AdaptivePermit, classifier: C) -> Self {
        Self { state: State::Running { future, permit: Some(permit), classifier: Some(classifier) } }
    }

    /// A call that skipped the limit (bypass): no capacity, no sample.
    pub(crate) fn bypassed(future: S::Future) -> Self {
        Self { state: State::Running { future, permit: None, classifier: None } }
    }

    pub(crate) fn rejected(rejection: Overloaded) -> Self {
        Self { state: State::Rejected { rejection: Some(rejection) } }
    }

    pub(crate) fn waiting(svc: S, req: Req, slot: BacklogSlot, max_wait: Duration, classifier: C) -> Self {
        // A huge wait saturates to "effectively never" instead of overflowing the clock.
        let deadline = palisade_core::time::deadline_after(slot.since(), max_wait);
        let sleep = Box::pin(tokio::time::sleep_until(deadline));
        Self {
            state: State::Waiting {
                svc: Some(svc),
                req: Some(req),
                slot: Some(slot),
                sleep,
                classifier: Some(classifier),
            },
        }
    }
}

impl<S: Service<Req>, Req, C> fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Running { .. } => "running",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { svc, req, slot, sleep, classifier } => {
                    let Some(s) = slot.as_mut() else { return Poll::Pending };
                    // Register before looking, so a grant in between is not missed.
                    s.waiter().register(cx.waker());
                    let permit = if let Some(permit) = s.try_take() {
                        permit
                    } else {
                        ready!(sleep.as_mut().poll(cx));
                        let Some(s) = slot.take() else { return Poll::Pending };
                        match s.give_up() {
                            Ok(permit) => permit,
                            Err(rejection) => return Poll::Ready(Err(rejection.into())),
                        }
                    };
                    drop(slot.take());
                    let (Some(mut svc), Some(req), Some(classifier)) =
                        (svc.take(), req.take(), classifier.take())
                    else {
                        return Poll::Pending;
                    };
                    let future = svc.call(req);
                    this.state.set(State::Running {
                        future,
                        permit: Some(permit),
                        classifier: Some(classifier),
                    });
                }
                StateProj::Running { future, permit, classifier } => {
                    let mut out = ready!(future.poll(cx));
                    if let (Some(permit), Some(classifier)) = (permit.take(), classifier.take()) {
                        // A gRPC stream holds its capacity until its body ends and is judged by
                        // its trailers (as concurrency-limits' gRPC interceptor does at onClose);
                        // dropped before its end, the permit goes back without a sample.
                        if let Some(deferral) = classifier.defer_eos(&mut out) {
                            deferral.attach(move |eos: Eos<'_>| {
                                let rtt = permit.elapsed();
                                let verdict = eos.classify_timed(rtt);
                                permit.complete(dropped(verdict.outcome()), rtt);
                            });
                        } else {
                            // One clock read: the latency judged is the latency sampled.
                            let rtt = permit.elapsed();
                            let verdict = classifier.classify_timed(&out, rtt);
                            permit.complete(dropped(verdict.outcome()), rtt);
                        }
                    }
                    return Poll::Ready(out.map_err(Into::into));
                }
                StateProj::Rejected { rejection } => {
                    return match rejection.take() {
                        Some(r) => Poll::Ready(Err(r.into())),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// A sample's "dropped" flag for an outcome; `None` (ignored) feeds no sample.
fn dropped(outcome: Outcome) -> Option<bool> {
    match outcome {
        Outcome::Success => Some(false),
        Outcome::Failure => Some(true),
        Outcome::Ignored => None,
    }
}
