//! [`Pool`]: dispatches each request to one member of an autoscaling pool.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::rejection::Overloaded;
use palisade_core::time::{deadline_from_now, FAR_FUTURE};
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, TryAcquireError};
use tokio::time::Sleep;
use tokio_util::sync::PollSemaphore;
use tower_service::Service;

use crate::builder::{PoolBuilder, PriorityFn};
use crate::future::ResponseFuture;
use crate::handle::{snapshot, PoolHandle, PoolSnapshot, WorkerGuard};
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
/// full, [`WhenFull::Refuse`] makes `call` fail with
/// [`Overloaded`](palisade_core::rejection::Overloaded); [`WhenFull::wait(d)`](WhenFull::wait)
/// keeps `poll_ready` pending until a place frees up, for at most `d` (a timer started by
/// the first pending `poll_ready`; when it fires, `poll_ready` is ready and `call` fails with
/// `Overloaded`; `Duration::MAX` waits without bound and arms no timer). After
/// [`PoolHandle::shutdown`], `poll_ready` fails with
/// [`Closed`](palisade_core::rejection::Closed).
///
/// # Clone
///
/// Clones share the pool: members, queue, stats and events. A clone starts without a
/// reserved place, so call `poll_ready` on it first.
pub struct Pool<Req, Res> {
    tx: mpsc::UnboundedSender<Message<Req, Res>>,
    slots: PollSemaphore,
    slot: Option<OwnedSemaphorePermit>,
    shed: bool,
    /// The bound of a [`WhenFull::Wait`] under way.
    waiting: Option<Pin<Box<Sleep>>>,
    when_full: WhenFull,
    priority: Option<PriorityFn<Req>>,
    worker: Arc<WorkerGuard>,
}

impl<Req, Res> fmt::Debug for Pool<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared().name)
            .field("reserved", &self.slot.is_some())
            .field("when_full", &self.when_full)
            .finish_non_exhaustive()
    }
}

impl<Req, Res> Clone for Pool<Req, Res> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            slots: self.slots.clone(),
            slot: None,
            shed: false,
            waiting: None,
            when_full: self.when_full,
            priority: self.priority.clone(),
            worker: self.worker.clone(),
        }
    }
}

impl<Req> Pool<Req, ()> {
    /// A builder with the defaults of [`PoolConfig`](crate::PoolConfig).
    pub fn builder() -> PoolBuilder<Req> {
        PoolBuilder::default()
    }
}

impl<Req, Res> Pool<Req, Res> {
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
            waiting: None,
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
    pub fn snapshot(&self) -> PoolSnapshot {
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

impl<Req, Res> Pool<Req, Res>
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

    /// [`submit_batch`](Pool::submit_batch) with every request ranked `priority`
    /// in the queue (higher first; the builder's `priority` function is not consulted).
    /// Waiting requests of a pool without a priority function have priority 0: a batch
    /// with a higher priority overtakes them, and the queue becomes a priority queue from
    /// then on (FIFO within a priority). Priorities are strict (no ageing): while batches of
    /// a higher priority keep arriving faster than the pool serves them, lower-priority
    /// requests wait — bound them with a timeout layer if they must not.
    ///
    /// ```
    /// use palisade_pool::{make_fn, Pool};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade_core::BoxError> {
    /// let make = make_fn(|| async {
    ///     Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
    /// });
    /// let pool = Pool::builder().max_size(2).build(make)?;
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

impl<Req, Res> Service<Req> for Pool<Req, Res>
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
        if self.slot.is_some() {
            return Poll::Ready(Ok(()));
        }
        if self.shed {
            // Polled ready again after a refusal (a balancer's ready cache re-checks): a place
            // freed meanwhile is taken instead of serving the stale refusal.
            if let Ok(slot) = self.shared().slots.clone().try_acquire_owned() {
                self.shed = false;
                self.slot = Some(slot);
            }
            return Poll::Ready(Ok(()));
        }
        let max_wait = self.when_full.max_wait();
        if max_wait.is_zero() {
            match self.shared().slots.clone().try_acquire_owned() {
                Ok(slot) => self.slot = Some(slot),
                Err(TryAcquireError::NoPermits) => self.shed = true,
                Err(TryAcquireError::Closed) => return Poll::Ready(Err(self.shared().closed_error())),
            }
            return Poll::Ready(Ok(()));
        }
        match self.slots.poll_acquire(cx) {
            Poll::Ready(Some(slot)) => {
                self.waiting = None;
                self.slot = Some(slot);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(None) => {
                self.waiting = None;
                Poll::Ready(Err(self.shared().closed_error()))
            }
            // Saturates to "effectively never": no timer at all.
            Poll::Pending if max_wait >= FAR_FUTURE => Poll::Pending,
            Poll::Pending => {
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline_from_now(max_wait))));
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // The wait's bound passed: `call` refuses, as under `WhenFull::Refuse`. A
                // fresh `PollSemaphore` leaves the semaphore's wait list, so no place is
                // handed to this service while it is not waiting.
                self.waiting = None;
                self.slots = PollSemaphore::new(self.shared().slots.clone());
                self.shed = true;
                Poll::Ready(Ok(()))
            }
        }
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
