//! The [`Chaos`] service.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tower_service::Service;

use crate::error::{catch, InjectedFault, Panicked};
use crate::event::ChaosEvent;
use crate::future::{Action, ResponseFuture};
use crate::handle::ChaosHandle;
use crate::layer::{ChaosLayer, Shared};

/// Injects faults, substitute responses, latency and hangs; made by [`ChaosLayer`].
///
/// # Clone
///
/// Clones share the layer's settings, generator and counters. A clone starts un-ready (it
/// must be driven by `poll_ready` like the inner service it clones).
pub struct Chaos<S, Req, Res> {
    inner: S,
    shared: Arc<Shared<Req, Res>>,
}

impl<S: Clone, Req, Res> Clone for Chaos<S, Req, Res> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug, Req, Res> fmt::Debug for Chaos<S, Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos").field("inner", &self.inner).field("name", &self.shared.control.name).finish()
    }
}

impl<S, Req, Res> Chaos<S, Req, Res> {
    /// Wraps `inner` with the chaos of `layer` (sharing its state).
    pub fn new(inner: S, layer: &ChaosLayer<Req, Res>) -> Self {
        Self { inner, shared: layer.shared().clone() }
    }

    /// A handle to switch injection, change rates, read counters and register listeners.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle { control: self.shared.control.clone() }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, Res> Service<Req> for Chaos<S, Req, Res>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Res;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let control = &*self.shared.control;
        let req = if control.enabled.load(Ordering::Relaxed) && control.any_rate() {
            match self.call_chaos(req) {
                Ok(injected) => return injected,
                Err(req) => req,
            }
        } else {
            req
        };
        ResponseFuture::inner(self.inner.call(req))
    }
}

impl<S, Req, Res> Chaos<S, Req, Res>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
{
    /// Draws and applies the injections for one call (the layer is enabled and a rate is
    /// set); gives the request back when nothing is injected, so that the pass path builds
    /// its future in one place.
    #[inline]
    fn call_chaos(&mut self, req: Req) -> Result<ResponseFuture<S, Req>, Req> {
        let shared = &*self.shared;
        let control = &*shared.control;
        // Generators and predicates are user code: a panic answers this call with
        // `Panicked` (component "hook", the hook as its site) and nothing else.
        let panicked = |site: &'static str| {
            move |message: String| -> BoxError {
                Box::new(Panicked::new("hook", control.name.clone(), message).with_site(site))
            }
        };
        if let Some(p) = &shared.predicate {
            match catch(|| p(&req)) {
                Ok(true) => {}
                Ok(false) => return Err(req),
                Err(message) => return Ok(ResponseFuture::answer(Err(panicked("inject_when")(message)))),
            }
        }
        control.considered.increment();

        let delay = if control.roll(&control.latency_ppm) {
            let delay = match &shared.latency {
                None => control.latency(),
                Some(f) => match catch(|| f(&req)) {
                    Ok(delay) => delay,
                    Err(message) => {
                        return Ok(ResponseFuture::answer(Err(panicked("latency_with")(message))))
                    }
                },
            };
            control.latencies.increment();
            control.bus.publish(ChaosEvent::LatencyInjected { delay });
            Some(delay)
        } else {
            None
        };

        let action = if control.roll(&control.hang_ppm) {
            control.hangs.increment();
            control.bus.publish(ChaosEvent::HangInjected);
            Action::Hang(req)
        } else if control.roll(&control.fault_ppm) {
            let err = match &shared.fault {
                Some(f) => catch(|| f(&req)).unwrap_or_else(panicked("fault_with")),
                None => InjectedFault::new(control.name.clone()).into(),
            };
            control.faults.increment();
            control.bus.publish(ChaosEvent::FaultInjected);
            Action::Answer(Err(err))
        } else if let Some(res) =
            shared.outcome.as_ref().filter(|_| control.roll(&control.outcome_ppm)).map(|f| catch(|| f(&req)))
        {
            control.outcomes.increment();
            control.bus.publish(ChaosEvent::OutcomeInjected);
            Action::Answer(res.map_err(panicked("outcome_with")))
        } else {
            Action::Call(req)
        };

        Ok(match (delay, action) {
            (None, Action::Call(req)) => return Err(req),
            (None, Action::Hang(req)) => ResponseFuture::hang(self.inner.call(req)),
            (None, Action::Answer(result)) => ResponseFuture::answer(result),
            (Some(delay), action) => {
                // Call after the delay the service that `poll_ready` made ready; keep a fresh
                // clone for the next `poll_ready`.
                let svc = match action {
                    Action::Call(_) | Action::Hang(_) => {
                        let clone = self.inner.clone();
                        Some(std::mem::replace(&mut self.inner, clone))
                    }
                    Action::Answer(_) => None,
                };
                ResponseFuture::delayed(delay, svc, action)
            }
        })
    }
}
