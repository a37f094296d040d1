//! [`Scope`]: a tree of cancellation, in-flight tracking, spawned tasks and resources.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::config::{ensure, ConfigError};
use palisade_core::rejection::Closed;
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::error::{Cancelled, TaskPanicked};
use crate::resource::Teardown;

tokio::task_local! {
    /// On a task spawned with `Scope::spawn`: its scope (by address) and the token that
    /// counts it in the scope's tracker, so that a `close` called from that very task can
    /// stop counting it (a task cannot wait for itself).
    static OWN_TASK: std::cell::RefCell<Option<(usize, TaskTrackerToken)>>;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A unit of structured concurrency: work started in it (spawned tasks, requests through a
/// [`ScopeLayer`](crate::ScopeLayer), [pollers](crate::Poller)) is cancelled when it is
/// cancelled, and the values provided to it are torn down when it ends.
///
/// - **Tree**: [`child`](Scope::child) scopes are cancelled with their parent (a
///   grandchild too), drained by the parent's [`close`](Scope::close) and see the parent's
///   resources. A [`detached`](Scope::detached) child inherits cancellation only: it has its
///   own timeout, the parent's close does not wait for it, and it does not see the parent's
///   resources.
/// - **Cancellation** is a tokio-util [`CancellationToken`]; in-flight work is counted by
///   tokio-util [`TaskTracker`]s.
/// - **Drain**: [`close(deadline)`](Scope::close) stops admitting, waits for in-flight work
///   up to `deadline`, cancels the rest, tears the resources down and reports how many
///   finished and how many were cancelled.
/// - **Limit**: [`ScopeBuilder::limit`] bounds how many spawned tasks run at once.
/// - **Leaving**: when the last handle to a scope is dropped, the scope is cancelled (its
///   tasks stop at their next poll) and resources not yet torn down are torn down on a task
///   of the current runtime.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use palisade_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let root = Scope::new("server");
/// let child = root.child();
/// let grandchild = child.child();
/// let job = grandchild.spawn(async {
///     tokio::time::sleep(Duration::from_secs(3600)).await;
/// });
/// root.cancel();
/// assert!(grandchild.is_cancelled());
/// assert!(job.await.unwrap_err().is::<palisade_scope::error::Cancelled>());
/// # }
/// ```
///
/// # Clone
///
/// Clones are handles to the same scope.
#[derive(Clone)]
pub struct Scope {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: Arc<str>,
    pub(crate) token: CancellationToken,
    /// Tasks spawned in the scope.
    tasks: TaskTracker,
    /// Requests in flight through a `ScopeLayer`.
    requests: TaskTracker,
    /// Cancelled when the scope stops admitting (close began, or cancelled).
    pub(crate) closing: CancellationToken,
    limit: Option<Arc<Semaphore>>,
    resources: Mutex<Vec<Teardown>>,
    /// The parent whose resources this scope sees (`None` for roots and detached children).
    parent: Option<Scope>,
    /// Attached children, drained by this scope's `close`.
    children: Mutex<Vec<Weak<Inner>>>,
    /// Held while a `close` tears this scope's resources down, so that a concurrent close
    /// of an ancestor waits for it before tearing down its own (children first).
    teardown_lock: tokio::sync::Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Leaving the scope cancels what it started.
        self.token.cancel();
        let resources = std::mem::take(&mut *lock(&self.resources));
        if resources.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let name = self.name.clone();
                handle.spawn(async move {
                    for teardown in resources.into_iter().rev() {
                        teardown.run(&name).await;
                    }
                });
            }
            Err(_) => {
                tracing::warn!(target: "palisade", scope = %self.name, "scope dropped outside a runtime: resources dropped without their teardown");
            }
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("name", &self.inner.name)
            .field("cancelled", &self.is_cancelled())
            .field("closing", &self.is_closing())
            .field("tasks", &self.inner.tasks.len())
            .field("requests", &self.inner.requests.len())
            .finish_non_exhaustive()
    }
}

/// What [`Scope::close`] achieved.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let scope = palisade_scope::Scope::new("idle");
/// let report = scope.close(std::time::Duration::from_secs(1)).await;
/// assert!(report.drained());
/// assert_eq!((report.finished, report.cancelled, report.torn_down), (0, 0, 0));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Tasks and requests in flight when the close began that finished before the deadline.
    pub finished: usize,
    /// Tasks and requests still running at the deadline, cancelled.
    pub cancelled: usize,
    /// Resources torn down.
    pub torn_down: usize,
    /// Resources whose teardown did not end within the deadline (it was dropped).
    pub teardowns_abandoned: usize,
}

impl DrainReport {
    /// Whether everything finished before the deadline (nothing was cancelled).
    pub fn drained(&self) -> bool {
        self.cancelled == 0
    }
}

/// Builds a [`Scope`]: its name, concurrency limit and timeout.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use palisade_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade_core::ConfigError> {
/// let root = Scope::builder("jobs").limit(4).build()?;
/// let batch = Scope::builder("batch").timeout(Duration::from_secs(5)).detached_from(&root)?;
/// tokio::time::sleep(Duration::from_secs(6)).await;
/// assert!(batch.is_cancelled() && !root.is_cancelled());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ScopeBuilder {
    name: Arc<str>,
    limit: Option<usize>,
    timeout: Option<Duration>,
}

impl ScopeBuilder {
    /// At most `n` tasks spawned in the scope and requests through its
    /// [`ScopeLayer`](crate::ScopeLayer)s run at once (one budget for both): tasks wait
    /// (cancellably) for a turn, a [`ScopeService`](crate::ScopeService)'s `poll_ready`
    /// waits for a permit. At least 1 and at most tokio's `Semaphore::MAX_PERMITS`.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Cancels the scope `timeout` after it is built (saturating: a huge timeout means
    /// never). Building it outside a Tokio runtime is a `ConfigError` (field `timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn validate(&self) -> Result<Option<Arc<Semaphore>>, ConfigError> {
        match self.limit {
            None => Ok(None),
            Some(n) => {
                ensure(n >= 1, "limit", "must be at least 1")?;
                ensure(n <= Semaphore::MAX_PERMITS, "limit", "must be at most Semaphore::MAX_PERMITS")?;
                Ok(Some(Arc::new(Semaphore::new(n))))
            }
        }
    }

    fn finish(
        self,
        token: CancellationToken,
        closing: CancellationToken,
        parent: Option<Scope>,
    ) -> Result<Scope, ConfigError> {
        let limit = self.validate()?;
        if let Some(timeout) = self.timeout {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                ConfigError::new("timeout", "a scope with a timeout must be built inside a Tokio runtime")
            })?;
            let t = token.clone();
            let deadline = deadline_from_now(timeout);
            // Not a task of the scope: it ends with the scope's cancellation.
            runtime.spawn(async move {
                if t.run_until_cancelled(tokio::time::sleep_until(deadline)).await.is_some() {
                    t.cancel();
                }
            });
        }
        Ok(Scope::raw(self.name, token, closing, limit, parent))
    }

    /// A root scope.
    pub fn build(self) -> Result<Scope, ConfigError> {
        self.finish(CancellationToken::new(), CancellationToken::new(), None)
    }

    /// A child of `parent`: cancelled with it, drained by its close, sees its resources.
    pub fn child_of(self, parent: &Scope) -> Result<Scope, ConfigError> {
        let child = self.finish(
            parent.inner.token.child_token(),
            parent.inner.closing.child_token(),
            Some(parent.clone()),
        )?;
        parent.adopt(&child);
        Ok(child)
    }

    /// A detached child of `parent`: cancelled with it, nothing more (its own timeout, not
    /// drained by the parent's close, does not see the parent's resources).
    pub fn detached_from(self, parent: &Scope) -> Result<Scope, ConfigError> {
        self.finish(parent.inner.token.child_token(), CancellationToken::new(), None)
    }
}

impl Scope {
    /// A root scope named `name` without limit or timeout.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Scope::raw(name.into(), CancellationToken::new(), CancellationToken::new(), None, None)
    }

    fn raw(
        name: Arc<str>,
        token: CancellationToken,
        closing: CancellationToken,
        limit: Option<Arc<Semaphore>>,
        parent: Option<Scope>,
    ) -> Self {
        Scope {
            inner: Arc::new(Inner {
                name,
                token,
                tasks: TaskTracker::new(),
                requests: TaskTracker::new(),
                closing,
                limit,
                resources: Mutex::new(Vec::new()),
                parent,
                children: Mutex::new(Vec::new()),
                teardown_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn adopt(&self, child: &Scope) {
        let mut children = lock(&self.inner.children);
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child.inner));
    }

    /// A builder for a scope named `name`.
    pub fn builder(name: impl Into<Arc<str>>) -> ScopeBuilder {
        ScopeBuilder { name: name.into(), limit: None, timeout: None }
    }

    /// An attached child named after this scope (see [`ScopeBuilder::child_of`]).
    pub fn child(&self) -> Scope {
        let child = Scope::raw(
            self.inner.name.clone(),
            self.inner.token.child_token(),
            self.inner.closing.child_token(),
            None,
            Some(self.clone()),
        );
        self.adopt(&child);
        child
    }

    /// A detached child that cancels itself after `timeout` (see
    /// [`ScopeBuilder::detached_from`]). Outside a Tokio runtime it has no timeout (it is
    /// still cancelled with this scope).
    pub fn detached(&self, timeout: Duration) -> Scope {
        let builder = ScopeBuilder { name: self.inner.name.clone(), limit: None, timeout: Some(timeout) };
        builder.detached_from(self).unwrap_or_else(|_| {
            Scope::raw(
                self.inner.name.clone(),
                self.inner.token.child_token(),
                CancellationToken::new(),
                None,
                None,
            )
        })
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A clone of the scope's cancellation token (for `select!` or tokio-util APIs).
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// Cancels the scope and every descendant now: tasks and requests in flight end with
    /// [`Cancelled`] at their next poll, new ones are refused. Resources are torn down by
    /// [`close`](Scope::close) (or when the last handle is dropped).
    pub fn cancel(&self) {
        self.inner.closing.cancel();
        self.inner.token.cancel();
    }

    /// Whether the scope (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Whether the scope refuses new work (closing, or cancelled).
    pub fn is_closing(&self) -> bool {
        self.inner.closing.is_cancelled() || self.inner.token.is_cancelled()
    }

    /// Completes when the scope is cancelled.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.token.cancelled()
    }

    /// Tasks and requests of this scope (not its children) still running.
    pub fn in_flight(&self) -> usize {
        self.inner.tasks.len() + self.inner.requests.len()
    }

    pub(crate) fn closed_error(&self) -> Closed {
        Closed::new(self.inner.name.clone())
    }

    pub(crate) fn limit(&self) -> Option<&Arc<Semaphore>> {
        self.inner.limit.as_ref()
    }

    pub(crate) fn request_token(&self) -> TaskTrackerToken {
        self.inner.requests.token()
    }

    /// Spawns `future` as a task of the scope and returns its handle. The task waits for a
    /// turn when the scope has a [limit](ScopeBuilder::limit), ends with [`Cancelled`] when
    /// the scope is cancelled (the future is dropped), and with [`TaskPanicked`] if it
    /// panics. A closing scope refuses with [`Closed`]; outside a Tokio runtime the handle
    /// answers an error at once (never a panic).
    pub fn spawn<F>(&self, future: F) -> ScopeTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = self.inner.name.clone();
        if self.is_closing() {
            return ScopeTask { state: TaskState::Refused(Some(self.closed_error().into())), name };
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let err: BoxError = "Scope::spawn needs a Tokio runtime".into();
            return ScopeTask { state: TaskState::Refused(Some(err)), name };
        };
        let token = self.inner.token.clone();
        let limit = self.inner.limit.clone();
        let work = async move {
            let _permit = match limit {
                Some(s) => match s.acquire_owned().await {
                    Ok(p) => Some(p),
                    Err(_) => return None,
                },
                None => None,
            };
            Some(AssertUnwindSafe(future).catch_unwind().await)
        };
        let own = (Arc::as_ptr(&self.inner) as usize, self.inner.tasks.token());
        let handle = runtime.spawn(OWN_TASK.scope(std::cell::RefCell::new(Some(own)), async move {
            // Cancellation first (tokio-util's `run_until_cancelled` polls the work
            // first): a task waiting for a turn when the scope is cancelled must not
            // start once the permit frees up.
            tokio::select! {
                biased;
                () = token.cancelled() => None,
                out = work => out,
            }
        }));
        ScopeTask { state: TaskState::Running(handle), name }
    }

    /// Provides `value` to the scope: its work and its attached children's find it with
    /// [`get`](Scope::get); `teardown` runs once when the scope ends (close, or the last
    /// handle dropped), after every resource provided later was torn down (reverse order),
    /// and after the children's. A panicking teardown is contained (logged).
    ///
    /// A closing scope refuses with [`Closed`]; the value's teardown then runs on a spawned
    /// task (a runtime is needed).
    ///
    /// # Example: a resource pool as a scoped resource
    ///
    /// ```
    /// use palisade_resource_pool::{lifecycle_fn, LifecycleFn, ResourcePool};
    /// use palisade_scope::Scope;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade_core::BoxError> {
    /// let scope = Scope::new("app");
    /// let pool = ResourcePool::builder(lifecycle_fn(|| async { Ok::<_, std::io::Error>(String::from("conn")) })).build()?;
    /// // Every pooled resource goes through the pool's destroy hook when the scope ends.
    /// scope.provide(pool, |pool| async move { pool.close().await })?;
    /// let conn = scope.get::<ResourcePool<LifecycleFn<String>>>().unwrap().acquire().await?;
    /// drop(conn);
    /// let report = scope.close(Duration::from_secs(1)).await;
    /// assert_eq!(report.torn_down, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn provide<T, F, Fut>(&self, value: T, teardown: F) -> Result<Arc<T>, BoxError>
    where
        T: Send + Sync + 'static,
        F: FnOnce(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let value = Arc::new(value);
        let teardown = Teardown::new(value.clone(), teardown);
        if self.is_closing() {
            let name = self.inner.name.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { teardown.run(&name).await });
            }
            return Err(self.closed_error().into());
        }
        lock(&self.inner.resources).push(teardown);
        Ok(value)
    }

    /// The newest value of type `T` provided to this scope or an attached ancestor.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            let found =
                lock(&s.inner.resources).iter().rev().find_map(|t| t.value().clone().downcast::<T>().ok());
            if found.is_some() {
                return found;
            }
            scope = s.inner.parent.as_ref();
        }
        None
    }

    /// This scope and its attached descendants, parents before children.
    fn tree(&self) -> Vec<Scope> {
        let mut out = vec![self.clone()];
        let mut i = 0;
        while i < out.len() {
            let children: Vec<Scope> = lock(&out[i].inner.children)
                .iter()
                .filter_map(Weak::upgrade)
                .map(|inner| Scope { inner })
                .collect();
            out.extend(children);
            i += 1;
        }
        out
    }

    /// Ends the scope gracefully: stops admitting (new tasks and requests are refused with
    /// [`Closed`]) in this scope and its attached descendants, waits up to `deadline` for
    /// the work in flight, cancels what is left (it ends with [`Cancelled`]), waits for the
    /// cancelled tasks to stop, then tears down the resources, children's first, each
    /// scope's in reverse order of providing. Calling it again reports nothing new.
    ///
    /// Each teardown gets `deadline` too (from its own start): one that has not ended by
    /// then is dropped, logged and counted in
    /// [`teardowns_abandoned`](DrainReport::teardowns_abandoned), so a hanging teardown
    /// cannot make `close` wait forever. With `Duration::ZERO` only teardowns that finish
    /// without waiting complete. A close of an ancestor running at the same time waits for
    /// this scope's teardown before tearing down its own resources.
    ///
    /// A request future that nobody polls any more is counted as cancelled but not waited
    /// for: it ends at its caller's next poll.
    ///
    /// Called from a task of the scope (or of a descendant) itself, `close` does not wait
    /// for that task (a task cannot wait for itself); it is cancelled with the others when
    /// the drain ends, and the teardown still runs (on a task of its own).
    pub async fn close(&self, deadline: Duration) -> DrainReport {
        let tree = self.tree();
        // Called from one of the tree's own tasks: stop counting the caller.
        let _ = OWN_TASK.try_with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot
                .as_ref()
                .is_some_and(|(key, _)| tree.iter().any(|s| Arc::as_ptr(&s.inner) as usize == *key))
            {
                *slot = None;
            }
        });
        for s in &tree {
            s.inner.closing.cancel();
            s.inner.tasks.close();
            s.inner.requests.close();
        }
        let count = |tree: &[Scope]| tree.iter().map(Scope::in_flight).sum::<usize>();
        let at_start = count(&tree);
        let all_done = async {
            for s in &tree {
                s.inner.tasks.wait().await;
                s.inner.requests.wait().await;
            }
        };
        let _ = tokio::time::timeout_at(deadline_from_now(deadline), all_done).await;
        let cancelled = count(&tree);
        // The rest runs on a task of its own: cancelling the scope may end the caller (a
        // task of the scope), and the teardown must still run.
        let token = self.inner.token.clone();
        let rest = async move {
            token.cancel();
            for s in &tree {
                s.inner.tasks.wait().await;
            }
            let (mut torn_down, mut teardowns_abandoned) = (0, 0);
            for s in tree.iter().rev() {
                let (done, abandoned) = s.teardown(deadline).await;
                torn_down += done;
                teardowns_abandoned += abandoned;
            }
            (torn_down, teardowns_abandoned)
        };
        let (torn_down, teardowns_abandoned) = tokio::spawn(rest).await.unwrap_or((0, 0));
        DrainReport {
            finished: at_start.saturating_sub(cancelled),
            cancelled,
            torn_down,
            teardowns_abandoned,
        }
    }

    /// Tears the resources down, newest first, each within `limit`: (done, abandoned).
    async fn teardown(&self, limit: Duration) -> (usize, usize) {
        let _turn = self.inner.teardown_lock.lock().await;
        let (mut done, mut abandoned) = (0, 0);
        loop {
            let next = lock(&self.inner.resources).pop();
            let Some(teardown) = next else { break };
            let run = teardown.run(&self.inner.name);
            if tokio::time::timeout_at(deadline_from_now(limit), run).await.is_ok() {
                done += 1;
            } else {
                abandoned += 1;
                tracing::warn!(target: "palisade", scope = %self.inner.name, ?limit, "a scoped resource's teardown did not end within the close deadline: abandoned");
            }
        }
        (done, abandoned)
    }
}

// === impl ScopeTask ===

pin_project! {
    /// The handle of a task spawned with [`Scope::spawn`]: a future of its output, or of
    /// [`Cancelled`], [`TaskPanicked`] or [`Closed`] (spawned in a closing scope). Dropping
    /// the handle does not stop the task (the scope does).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_scope::{error::Cancelled, Scope};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let scope = Scope::new("jobs");
    /// let task = scope.spawn(async { tokio::time::sleep(Duration::from_secs(60)).await });
    /// task.abort();
    /// assert!(task.await.unwrap_err().is::<Cancelled>());
    /// # }
    /// ```
    pub struct ScopeTask<T> {
        state: TaskState<T>,
        name: Arc<str>,
    }
}

enum TaskState<T> {
    Running(JoinHandle<Option<std::thread::Result<T>>>),
    Refused(Option<BoxError>),
}

impl<T> fmt::Debug for ScopeTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeTask").field("scope", &self.name).finish_non_exhaustive()
    }
}

impl<T> ScopeTask<T> {
    /// Stops the task at its next poll (it then ends with [`Cancelled`]).
    pub fn abort(&self) {
        if let TaskState::Running(h) = &self.state {
            h.abort();
        }
    }

    /// Whether the task ended.
    pub fn is_finished(&self) -> bool {
        match &self.state {
            TaskState::Running(h) => h.is_finished(),
            TaskState::Refused(_) => true,
        }
    }
}

impl<T> Future for ScopeTask<T> {
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state {
            TaskState::Refused(err) => {
                Poll::Ready(Err(err.take().unwrap_or_else(|| Cancelled::new(this.name.clone()).into())))
            }
            TaskState::Running(handle) => match Pin::new(handle).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Some(Ok(out)))) => Poll::Ready(Ok(out)),
                Poll::Ready(Ok(Some(Err(payload)))) => {
                    Poll::Ready(Err(TaskPanicked::new(this.name.clone(), &*payload).into()))
                }
                Poll::Ready(Err(join)) if join.is_panic() => {
                    let payload = join.into_panic();
                    Poll::Ready(Err(TaskPanicked::new(this.name.clone(), &*payload).into()))
                }
                // Cancelled by the scope, or aborted.
                Poll::Ready(Ok(None) | Err(_)) => Poll::Ready(Err(Cancelled::new(this.name.clone()).into())),
            },
        }
    }
}
