use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::BoxError;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::future::{Pending, ResponseFuture};
use crate::shared::{Grants, Refusal, Shared};

/// Rate-limits calls to `S`; made by [`RateLimitLayer`](crate::RateLimitLayer).
///
/// With only global, unconditional, unweighted tiers, admission happens in `poll_ready`:
/// the service reserves the tokens there (waiting in wait mode), and `call` spends them. A
/// service dropped between the two gives them back. A refused request makes `poll_ready`
/// ready all the same and `call` answer with the rejection (as tower's `LoadShed` does);
/// `poll_ready` fails only when the inner service does. Keyed, weighted or conditional tiers need
/// the request, so admission happens in `call`; then `poll_ready` only reflects the inner
/// service, and a waiting request waits in its [`ResponseFuture`] (dropping it gives its
/// reservation back).
///
/// # Clone
///
/// Every clone shares the layer's limits. A clone starts un-ready: it holds no reservation
/// of the original.
pub struct RateLimit<S, Req> {
    inner: S,
    admission: Admission<Req>,
}

/// Admission state of one service value; gives back an unused reservation on drop.
struct Admission<Req> {
    shared: Arc<Shared<Req>>,
    state: State,
    sleep: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug)]
enum State {
    Idle,
    /// Sleeping until `until`: with `grants`, a reserved slot; without, a retry.
    Waiting {
        until: Instant,
        grants: Option<Grants>,
        deadline: Option<Instant>,
    },
    /// Admitted; `call` spends it.
    Ready(Grants),
    /// Refused; `call` answers with the rejection (a later `poll_ready` asks again).
    Refused(Refusal),
}

impl<Req> Drop for Admission<Req> {
    fn drop(&mut self) {
        match mem::replace(&mut self.state, State::Idle) {
            State::Ready(grants) | State::Waiting { grants: Some(grants), .. } => self.shared.refund(grants),
            _ => {}
        }
    }
}

impl<Req> Admission<Req> {
    /// Ready when admitted or refused (see `State`); pending while waiting.
    fn poll_admit(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut retry_deadline = None;
        loop {
            match mem::replace(&mut self.state, State::Idle) {
                State::Ready(grants) => {
                    self.state = State::Ready(grants);
                    return Poll::Ready(());
                }
                // A refusal not yet delivered is stale by now: ask again.
                State::Refused(_) => {}
                State::Waiting { until, grants, deadline } => {
                    let sleep = match &mut self.sleep {
                        Some(sleep) => {
                            if sleep.deadline() != until {
                                sleep.as_mut().reset(until);
                            }
                            sleep
                        }
                        empty => empty.insert(Box::pin(tokio::time::sleep_until(until))),
                    };
                    if sleep.as_mut().poll(cx).is_pending() {
                        self.state = State::Waiting { until, grants, deadline };
                        return Poll::Pending;
                    }
                    match grants {
                        Some(grants) => self.state = State::Ready(grants),
                        None => retry_deadline = deadline,
                    }
                }
                State::Idle => {
                    let shared = &*self.shared;
                    // Reject mode, one global limit: its own (possibly fast) clock, no
                    // deadline to compute.
                    if let Some(result) = shared.admit_single_now() {
                        match result {
                            Ok((grants, None)) => {
                                self.state = State::Ready(grants);
                                return Poll::Ready(());
                            }
                            Ok((grants, Some(until))) => {
                                shared.delayed(until.saturating_duration_since(Instant::now()));
                                self.state = State::Waiting { until, grants: Some(grants), deadline: None };
                                continue;
                            }
                            Err(refusal) => {
                                self.state = State::Refused(refusal);
                                return Poll::Ready(());
                            }
                        }
                    }
                    let now = Instant::now();
                    let deadline = retry_deadline.or_else(|| shared.deadline(now));
                    match shared.acquire(None, 1, now, crate::shared::max_wait(now, deadline), true) {
                        Ok((grants, ready)) if ready <= now => {
                            self.state = State::Ready(grants);
                            return Poll::Ready(());
                        }
                        Ok((grants, ready)) => {
                            if retry_deadline.is_none() {
                                shared.delayed(ready - now);
                            }
                            self.state = State::Waiting { until: ready, grants: Some(grants), deadline };
                        }
                        Err(Refusal::Later { after }) if within(now, after, deadline) => {
                            if retry_deadline.is_none() {
                                shared.delayed(after);
                            }
                            let until = crate::limiter::add(now, after);
                            self.state = State::Waiting { until, grants: None, deadline };
                        }
                        Err(refusal) => {
                            self.state = State::Refused(refusal);
                            return Poll::Ready(());
                        }
                    }
                }
            }
        }
    }
}

/// Whether a retry after `after` is still before the wait's deadline.
pub(crate) fn within(now: Instant, after: Duration, deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| crate::limiter::add(now, after) <= d)
}

impl<S, Req> RateLimit<S, Req> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<Req>>) -> Self {
        Self { inner, admission: Admission { shared, state: State::Idle, sleep: None } }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service (an unused reservation is given back).
    pub fn into_inner(self) -> S {
        let Self { inner, admission } = self;
        drop(admission);
        inner
    }
}

impl<S: Clone, Req> Clone for RateLimit<S, Req> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.admission.shared.clone())
    }
}

impl<S: fmt::Debug, Req> fmt::Debug for RateLimit<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("name", &self.admission.shared.core.name)
            .field("state", &self.admission.state)
            .finish()
    }
}

impl<S, Req> Service<Req> for RateLimit<S, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.admission.shared.needs_request {
            if self.admission.poll_admit(cx).is_pending() {
                return Poll::Pending;
            }
            if matches!(self.admission.state, State::Refused(_)) {
                // Like tower's `LoadShed`: ready, and `call` answers with the rejection, so
                // that `Buffer`, hyper and others never see a failed `poll_ready`.
                return Poll::Ready(Ok(()));
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                // The service is broken: do not keep capacity for a call that cannot come.
                if let State::Ready(grants) = mem::replace(&mut self.admission.state, State::Idle) {
                    self.admission.shared.refund(grants);
                }
                Poll::Ready(Err(e.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.admission.shared;
        if !shared.needs_request {
            match mem::replace(&mut self.admission.state, State::Idle) {
                State::Ready(_spent) => {
                    shared.core.admitted.increment();
                    return ResponseFuture::called(self.inner.call(req));
                }
                State::Refused(refusal) => return ResponseFuture::rejected(shared.reject(refusal)),
                other => {
                    // Called without readiness: admit now without waiting, or refuse.
                    self.admission.state = other;
                    let now = Instant::now();
                    return match shared.acquire(None, 1, now, Some(Duration::ZERO), false) {
                        Ok(_spent) => {
                            shared.core.admitted.increment();
                            ResponseFuture::called(self.inner.call(req))
                        }
                        Err(refusal) => ResponseFuture::rejected(shared.reject(refusal)),
                    };
                }
            }
        }

        if let Some(result) = shared.check_keyed(&req) {
            return match result {
                Ok(()) => {
                    shared.core.admitted.increment();
                    ResponseFuture::called(self.inner.call(req))
                }
                Err(refusal) => ResponseFuture::rejected(shared.reject(refusal)),
            };
        }
        let now = Instant::now();
        let cost = shared.cost(&req);
        let deadline = shared.deadline(now);
        match shared.acquire(Some(&req), cost, now, crate::shared::max_wait(now, deadline), false) {
            Ok((_spent, ready)) if ready <= now => {
                shared.core.admitted.increment();
                ResponseFuture::called(self.inner.call(req))
            }
            Ok((grants, ready)) => {
                shared.delayed(ready - now);
                let pending = Pending::new(shared.clone(), Some(grants), cost, deadline);
                let clone = self.inner.clone();
                let svc = mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(svc, req, pending, ready)
            }
            Err(Refusal::Later { after }) if within(now, after, deadline) => {
                shared.delayed(after);
                let pending = Pending::new(shared.clone(), None, cost, deadline);
                let clone = self.inner.clone();
                let svc = mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(svc, req, pending, crate::limiter::add(now, after))
            }
            Err(refusal) => ResponseFuture::rejected(shared.reject(refusal)),
        }
    }
}
