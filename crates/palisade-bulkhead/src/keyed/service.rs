//! The keyed bulkhead service and its response future.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use palisade_core::keyed::Unkeyed;
use palisade_core::rejection::KeyMissing;
use palisade_core::service::ReadyCall;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::KeyedShared;
use crate::compartment::{Compartment, Permit, Waiting};

/// A bulkhead per key; see [`KeyedBulkheadLayer`](crate::KeyedBulkheadLayer).
///
/// # Clone
///
/// Clones share the map of pools; a clone starts un-ready.
pub struct KeyedBulkhead<S, K, F> {
    inner: S,
    shared: Arc<KeyedShared<K, F>>,
}

impl<S, K, F> KeyedBulkhead<S, K, F> {
    pub(super) fn new(inner: S, shared: Arc<KeyedShared<K, F>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F> Clone for KeyedBulkhead<S, K, F> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedBulkhead<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkhead")
            .field("inner", &self.inner)
            .field("common", &self.shared.common)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, Req> Service<Req> for KeyedBulkhead<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> Option<K>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeyedResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.shared;
        let compartment = if let Some(key) = (shared.key)(&req) {
            match shared.compartment(&key) {
                Ok(compartment) => Some(compartment),
                Err(full) => {
                    shared.common.refuse_key_set_full(&full);
                    return KeyedResponseFuture::rejected(full.into());
                }
            }
        } else {
            shared.warn_unkeyed.warn_unkeyed(&shared.common.name);
            match shared.when_unkeyed {
                Unkeyed::Shared => Some(shared.unkeyed.clone()),
                Unkeyed::PassThrough => None,
                Unkeyed::Reject => {
                    return KeyedResponseFuture::rejected(KeyMissing::new(shared.common.name.clone()).into())
                }
            }
        };
        // The ready service goes into the future; a fresh clone stays behind, un-ready.
        let clone = self.inner.clone();
        let call = ReadyCall::new(std::mem::replace(&mut self.inner, clone), req);
        let state = match compartment {
            Some(compartment) => KeyedState::Acquiring { compartment, waiting: None, call: Some(call) },
            // Unlimited: no permit.
            None => KeyedState::Called { call, permit: None },
        };
        KeyedResponseFuture { state }
    }
}

pin_project! {
    /// The response future of a [`KeyedBulkhead`]: waits for the key's permit, then runs
    /// the call holding it. Dropping it at any point leaves the queue or frees the permit.
    pub struct KeyedResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: KeyedState<S, Req>,
    }
}

pin_project! {
    #[project = KeyedStateProj]
    enum KeyedState<S, Req>
    where
        S: Service<Req>,
    {
        Acquiring {
            compartment: Arc<Compartment>,
            waiting: Option<Box<Waiting>>,
            call: Option<ReadyCall<S, Req>>,
        },
        Called {
            // The service was polled ready before `call`: `ReadyCall` calls it at once.
            #[pin]
            call: ReadyCall<S, Req>,
            permit: Option<Permit>,
        },
        Rejected { error: Option<BoxError> },
    }
}

impl<S: Service<Req>, Req> KeyedResponseFuture<S, Req> {
    fn rejected(error: BoxError) -> Self {
        Self { state: KeyedState::Rejected { error: Some(error) } }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for KeyedResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            KeyedState::Acquiring { .. } => "acquiring",
            KeyedState::Called { .. } => "called",
            KeyedState::Rejected { .. } => "rejected",
        };
        f.debug_struct("KeyedResponseFuture").field("state", &state).finish()
    }
}

impl<S, Req> Future for KeyedResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                KeyedStateProj::Acquiring { compartment, waiting, call } => {
                    let permit = match ready!(compartment.poll_acquire(waiting, cx)) {
                        Ok(permit) => permit,
                        Err(rejection) => return Poll::Ready(Err(rejection.into())),
                    };
                    let Some(call) = call.take() else { return Poll::Pending };
                    this.state.set(KeyedState::Called { call, permit: Some(permit) });
                }
                KeyedStateProj::Called { call, permit } => {
                    let out = ready!(call.poll(cx));
                    drop(permit.take());
                    return Poll::Ready(out.map_err(Into::into));
                }
                KeyedStateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "keyed bulkhead future polled after completion".into())));
                }
            }
        }
    }
}
