use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tower_service::Service;

use super::future::ResponseFuture;
use super::handle::AdaptiveLimitHandle;
use super::limiter::{Denied, Limiter};
use super::partition::Partitioner;

/// Sheds calls over a concurrency limit that adapts to the inner service's latency and
/// failures; built by [`AdaptiveLimitLayer`](super::AdaptiveLimitLayer).
///
/// `poll_ready` readies the inner service. `call` takes capacity for the request's partition
/// at once (the partition is only known from the request): the call runs holding it, waits
/// in the backlog (the ready inner service moves into the response future and is called
/// when capacity frees), or fails with [`Overloaded`](palisade_core::rejection::Overloaded).
/// The response future gives the capacity back on every path and, when the call finished,
/// feeds its latency and classification to the algorithm.
///
/// # Clone
///
/// Clones share the limit (an `Arc`); a clone starts un-ready.
pub struct AdaptiveLimit<S, C, Partition> {
    inner: S,
    limiter: Arc<Limiter>,
    classifier: C,
    partitioner: Arc<Partition>,
    names: Arc<[Arc<str>]>,
    /// Shed calls while the inner service is not ready (tower's `LoadShed`).
    shed_when_inner_not_ready: bool,
    /// `poll_ready` found the inner service not ready and shedding is on: `call` refuses.
    inner_not_ready: bool,
}

impl<S, C, Partition> AdaptiveLimit<S, C, Partition> {
    pub(crate) fn new(
        inner: S,
        limiter: Arc<Limiter>,
        classifier: C,
        partitioner: Arc<Partition>,
        names: Arc<[Arc<str>]>,
        shed_when_inner_not_ready: bool,
    ) -> Self {
        Self {
            inner,
            limiter,
            classifier,
            partitioner,
            names,
            shed_when_inner_not_ready,
            inner_not_ready: false,
        }
    }

    /// The handle to the shared limit.
    pub fn handle(&self) -> AdaptiveLimitHandle {
        AdaptiveLimitHandle { limiter: self.limiter.clone() }
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

impl<S: Clone, C: Clone, Partition> Clone for AdaptiveLimit<S, C, Partition> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            classifier: self.classifier.clone(),
            partitioner: self.partitioner.clone(),
            names: self.names.clone(),
            shed_when_inner_not_ready: self.shed_when_inner_not_ready,
            inner_not_ready: false,
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, Partition> fmt::Debug for AdaptiveLimit<S, C, Partition> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, C, Partition, Req> Service<Req> for AdaptiveLimit<S, C, Partition>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: palisade_core::Classify<S::Response, S::Error> + Clone,
    Partition: Partitioner<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Pending if self.shed_when_inner_not_ready => {
                // As tower's `LoadShed`: ready at once, and `call` refuses.
                self.inner_not_ready = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.inner_not_ready = false;
                Poll::Ready(r.map_err(Into::into))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if std::mem::take(&mut self.inner_not_ready) {
            // The inner service was not ready: never call it, refuse without a sample.
            return ResponseFuture::rejected(self.limiter.shed_inner_not_ready());
        }
        if self.partitioner.bypass(&req) {
            self.limiter.bypassed();
            return ResponseFuture::bypassed(self.inner.call(req));
        }
        let partition = self.partitioner.select(&req, &self.names);
        match self.limiter.acquire(partition) {
            Ok(permit) => ResponseFuture::running(self.inner.call(req), permit, self.classifier.clone()),
            Err(Denied::Rejected(rejection)) => ResponseFuture::rejected(rejection),
            Err(Denied::Queued(slot, max_wait)) => {
                // The ready service waits with the call; a fresh clone stays behind, un-ready.
                let clone = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(svc, req, slot, max_wait, self.classifier.clone())
            }
        }
    }
}
