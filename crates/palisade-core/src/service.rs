//! [`ReadyCall`]: the "wait until the inner service is ready, then call it" future that a
//! request admitted late runs.
//!
//! Some layers admit a request after `call` has returned its response future: a keyed rate
//! limit or bulkhead that waits for the key's permit, an adaptive limit's backlog. The future
//! then owns a clone of the inner service and the request, and, once admitted, has to drive
//! the inner service to readiness, call it and run the call. `ReadyCall` is that tail, written
//! once.
//!
//! ```
//! use palisade_core::service::ReadyCall;
//! use tower::service_fn;
//!
//! # tokio_test::block_on(async {
//! let svc = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) });
//! let call = ReadyCall::new(svc, 21);
//! assert_eq!(call.request(), Some(&21)); // still held: admission may look at it
//! assert_eq!(call.await, Ok(42));
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

pin_project! {
    /// Polls `S::poll_ready`, then `call`s with the request and drives the call's future to
    /// its end; see the [module docs](self).
    ///
    /// The service must be one that nobody else polled or called since it was cloned — or the
    /// very value that was polled ready (polling ready again is allowed by tower's contract
    /// and answers at once). Dropping a `ReadyCall` drops the service (releasing whatever its
    /// readiness reserved), the request if it was not sent, and the inner call's future (so
    /// the inner call is cancelled).
    ///
    /// An error from `poll_ready` ends the future with that error; the request is dropped,
    /// never sent. Polled again after it returned `Ready`, it stays `Pending`.
    pub struct ReadyCall<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Ready { service: S, request: Option<Req> },
        Called { #[pin] future: S::Future },
        Done,
    }
}

impl<S: Service<Req>, Req> ReadyCall<S, Req> {
    /// The future that sends `request` to `service` once `service` is ready.
    pub fn new(service: S, request: Req) -> Self {
        Self { state: State::Ready { service, request: Some(request) } }
    }

    /// The request while it has not been sent (admission logic may need to read it).
    pub fn request(&self) -> Option<&Req> {
        match &self.state {
            State::Ready { request, .. } => request.as_ref(),
            State::Called { .. } | State::Done => None,
        }
    }

    /// `true` once the request went to the inner service.
    pub fn is_called(&self) -> bool {
        !matches!(self.state, State::Ready { .. })
    }
}

impl<S: Service<Req>, Req> Future for ReadyCall<S, Req> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Ready { service, request } => {
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        state.set(State::Done);
                        return Poll::Ready(Err(err));
                    }
                    let Some(request) = request.take() else {
                        state.set(State::Done);
                        return Poll::Pending;
                    };
                    let future = service.call(request);
                    state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let out = ready!(future.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ReadyCall<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready { .. } => "waiting_for_ready",
            State::Called { .. } => "called",
            State::Done => "done",
        };
        f.debug_struct("ReadyCall").field("state", &state).finish()
    }
}
