//! [`Timeout`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::{Shared, TimeoutHandle};
use crate::policy::{FixedTimeout, TimeoutPolicy};

/// The service made by [`TimeoutLayer`](crate::TimeoutLayer): answers
/// [`TimedOut`](crate::error::TimedOut) when the inner call runs past its timeout.
///
/// # Clone
///
/// Clones share the layer's counter and listeners; the inner service is cloned.
pub struct Timeout<S, Policy = FixedTimeout> {
    inner: S,
    policy: Policy,
    shared: Arc<Shared>,
}

impl<S: Clone, Policy: Clone> Clone for Timeout<S, Policy> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), policy: self.policy.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug, Policy: fmt::Debug> fmt::Debug for Timeout<S, Policy> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, Policy> Timeout<S, Policy> {
    pub(crate) fn from_parts(inner: S, policy: Policy, shared: Arc<Shared>) -> Self {
        Self { inner, policy, shared }
    }

    /// A handle on the layer's counter and events.
    pub fn handle(&self) -> TimeoutHandle {
        TimeoutHandle { shared: self.shared.clone() }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the timeout service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Policy, Req> Service<Req> for Timeout<S, Policy>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Policy: TimeoutPolicy<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.policy.timeout_for(&req) {
            Some(after) => ResponseFuture::new(self.inner.call(req), Some((after, self.shared.clone()))),
            None => ResponseFuture::new(self.inner.call(req), None),
        }
    }
}
