//! [`PoolService`]: dispatches each request to one member of an autoscaling pool.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::rejection::Overloaded;
use palisade_core::BoxError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, TryAcquireError};
use tokio_util::sync::PollSemaphore;
use tower_service::Service;

use crate::config::{PoolServiceBuilder, PriorityFn, WhenFull};
use crate::future::ResponseFuture;
use crate::handle::{snapshot, PoolHandle, Snapshot, WorkerGuard};
use crate::shared::Shared;
use crate::worker::Message;

/// A [`Service`] backed by a pool of member services made on demand; see the
/// [crate docs](crate).
///
/// Each request goes to one member, chosen by the [`Strategy`](crate::Strategy), or waits in
/// a bounded queue until one is free. A worker task (spawned by the builder, aborted when
/// the last service, [`PoolHandle`] and waiting response future are dropped) owns the
/// members: it makes them (one at a time, with backoff on failure), scales between
/// `min_size` and `max_size`, evicts unhealthy ones and replaces them.
///
/// # Backpressure
///
/// `poll_ready` reserves a place in the queue; `call` spends it and the place is given back
/// once a member takes the request (or the response future is dropped). When the queue is
/// full, [`WhenFull::Reject`] makes `call` fail with
/// [`Overloaded`](palisade_core::rejection::Overloaded), [`WhenFull::Wait`] keeps
/// `poll_ready` pending. After [`PoolHandle::shutdown`], `poll_ready` fails with
/// [`Closed`](palisade_core::rejection::Closed).
///
/// # Clone
///
/// Clones share the pool: members, queue, stats and events. A clone starts without a
/// reserved place, so call `poll_ready` on it first.
pub struct PoolService<Req, Res> {
    tx: mpsc::UnboundedSender<Message<Req, Res>>,
    slots: PollSemaphore,
    slot: Option<OwnedSemaphorePermit>,
    shed: bool,
    when_full: WhenFull,
    priority: Option<PriorityFn<Req>>,
    worker: Arc<WorkerGuard>,
}

impl<Req, Res> fmt::Debug for PoolService<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolService")
            .field("name", &self.shared().name)
            .field("reserved", &self.slot.is_some())
            .field("when_full", &self.when_full)
            .finish_non_exhaustive()
    }
}

impl<Req, Res> Clone for PoolService<Req, Res> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            slots: self.slots.clone(),
            slot: None,
            shed: false,
            when_full: self.when_full,
            priority: self.priority.clone(),
            worker: self.worker.clone(),
        }
    }
}

impl<Req> PoolService<Req, ()> {
    /// A builder with the defaults listed on [`PoolServiceBuilder`].
    pub fn builder() -> PoolServiceBuilder<Req> {
        PoolServiceBuilder::default()
    }
}

impl<Req, Res> PoolService<Req, Res> {
    pub(crate) fn from_parts(
        tx: mpsc::UnboundedSender<Message<Req, Res>>,
        shared: &Shared,
        worker: Arc<WorkerGuard>,
        when_full: WhenFull,
        priority: Option<PriorityFn<Req>>,
    ) -> Self {
        Self {
            tx,
            slots: PollSemaphore::new(shared.slots.clone()),
            slot: None,
            shed: false,
            when_full,
            priority,
            worker,
        }
    }

    fn shared(&self) -> &Shared {
        &self.worker.shared
    }

    /// A handle to watch and shut down the pool.
    pub fn handle(&self) -> PoolHandle {
        PoolHandle { worker: self.worker.clone() }
    }

    /// The pool's numbers now.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(self.shared())
    }

    fn overloaded(&self) -> ResponseFuture<Res> {
        self.shared().rejected.increment();
        ResponseFuture::failed(Overloaded::new(self.shared().name.clone()).into())
    }

    fn enqueue(&mut self, request: Req, slot: OwnedSemaphorePermit) -> ResponseFuture<Res> {
        let priority = self.priority.as_ref().map_or(0, |f| f(&request));
        self.enqueue_ranked(request, slot, priority)
    }

    fn enqueue_ranked(
        &mut self,
        request: Req,
        slot: OwnedSemaphorePermit,
        priority: u8,
    ) -> ResponseFuture<Res> {
        let (reply, response) = oneshot::channel();
        let shared = &self.worker.shared;
        shared.queued.add(1);
        if self.tx.send(Message { request, reply, priority, slot }).is_err() {
            shared.queued.add(-1);
            return ResponseFuture::failed(shared.closed_error());
        }
        ResponseFuture::queued(response, self.worker.clone())
    }
}

impl<Req, Res> PoolService<Req, Res>
where
    Req: Send + 'static,
    Res: Send + 'static,
{
    /// Sends every request through the pool (waiting for queue places rather than being
    /// rejected) and returns the results in input order.
    pub async fn submit_batch<I>(&self, requests: I) -> Vec<Result<Res, BoxError>>
    where
        I: IntoIterator<Item = Req>,
    {
        self.batch(requests, None).await
    }

    /// [`submit_batch`](PoolService::submit_batch) with every request ranked `priority`
    /// in the queue (higher first; the builder's `priority` function is not consulted).
    /// Waiting requests of a pool without a priority function have priority 0: a batch
    /// with a higher priority overtakes them, and the queue becomes a priority queue from
    /// then on (FIFO within a priority). Priorities are strict (no ageing): while batches of
    /// a higher priority keep arriving faster than the pool serves them, lower-priority
    /// requests wait — bound them with a timeout layer if they must not.
    ///
    /// ```
    /// use palisade_pool::{make_fn, PoolService};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade_core::BoxError> {
    /// let make = make_fn(|| async {
    ///     Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
    /// });
    /// let pool = PoolService::builder().max_size(2).build(make)?;
    /// let urgent = pool.submit_batch_with_priority([1, 2, 3], 200).await;
    /// assert!(urgent.iter().all(Result::is_ok));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn submit_batch_with_priority<I>(&self, requests: I, priority: u8) -> Vec<Result<Res, BoxError>>
    where
        I: IntoIterator<Item = Req>,
    {
        self.batch(requests, Some(priority)).await
    }

    async fn batch<I>(&self, requests: I, priority: Option<u8>) -> Vec<Result<Res, BoxError>>
    where
        I: IntoIterator<Item = Req>,
    {
        let calls = requests.into_iter().map(|request| {
            let mut svc = self.clone();
            async move {
                let slots = svc.shared().slots.clone();
                let Ok(slot) = slots.acquire_owned().await else {
                    return Err(svc.shared().closed_error());
                };
                match priority {
                    Some(p) => svc.enqueue_ranked(request, slot, p).await,
                    None => svc.enqueue(request, slot).await,
                }
            }
        });
        futures_util::future::join_all(calls).await
    }
}

impl<Req, Res> Service<Req> for PoolService<Req, Res>
where
    Req: Send + 'static,
    Res: Send + 'static,
{
    type Response = Res;
    type Error = BoxError;
    type Future = ResponseFuture<Res>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.shared().is_closed() {
            self.slot = None;
            return Poll::Ready(Err(self.shared().closed_error()));
        }
        if self.slot.is_some() || self.shed {
            return Poll::Ready(Ok(()));
        }
        match self.when_full {
            WhenFull::Wait => match self.slots.poll_acquire(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(slot)) => self.slot = Some(slot),
                Poll::Ready(None) => return Poll::Ready(Err(self.shared().closed_error())),
            },
            WhenFull::Reject => match self.shared().slots.clone().try_acquire_owned() {
                Ok(slot) => self.slot = Some(slot),
                Err(TryAcquireError::NoPermits) => self.shed = true,
                Err(TryAcquireError::Closed) => return Poll::Ready(Err(self.shared().closed_error())),
            },
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(slot) = self.slot.take() {
            return self.enqueue(request, slot);
        }
        if std::mem::take(&mut self.shed) {
            return self.overloaded();
        }
        // `call` without `poll_ready`: take a place if one is free, never panic.
        if self.shared().is_closed() {
            return ResponseFuture::failed(self.shared().closed_error());
        }
        match self.shared().slots.clone().try_acquire_owned() {
            Ok(slot) => self.enqueue(request, slot),
            Err(_) => self.overloaded(),
        }
    }
}
