//! [`Scope`]: a tree of cancellation, in-flight tracking, spawned tasks and resources; its
//! [builder](ScopeBuilder) and [config](ScopeConfig), its [drain](Scope::close) and its
//! [tasks](ScopeTask).

mod builder;
mod close;
mod task;

pub use self::builder::{ScopeBuilder, ScopeConfig};
pub use self::close::DrainReport;
pub use self::task::ScopeTask;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use palisade_core::rejection::Closed;
use palisade_core::BoxError;
use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use palisade_core::sync::lock;

use crate::resource::Teardown;

tokio::task_local! {
    /// On a task spawned with `Scope::spawn`: its scope (by address) and the token that
    /// counts it in the scope's tracker, so that a `close` called from that very task can
    /// stop counting it (a task cannot wait for itself).
    static OWN_TASK: std::cell::RefCell<Option<(usize, TaskTrackerToken)>>;
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
/// - **Limit**: [`ScopeBuilder::limit`] bounds how many spawned tasks run at once (a
///   [`Poller`](crate::Poller) in the scope takes a turn only while it polls, not while it
///   sleeps).
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

/// A [`Scope`]'s state at one moment, from [`Scope::snapshot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeSnapshot {
    /// Tasks spawned in the scope still running (or waiting for a turn).
    pub tasks: usize,
    /// Requests through the scope's [`ScopeLayer`](crate::ScopeLayer)s in flight.
    pub requests: usize,
    /// Resources provided and not torn down yet.
    pub resources: usize,
    /// The scope refuses new work (closing, or cancelled).
    pub closing: bool,
    /// The scope (or an ancestor) was cancelled.
    pub cancelled: bool,
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

impl Scope {
    /// A root scope named `name` without limit or timeout.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Scope::raw(name.into(), CancellationToken::new(), CancellationToken::new(), None, None)
    }

    pub(super) fn raw(
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

    pub(super) fn adopt(&self, child: &Scope) {
        let mut children = lock(&self.inner.children);
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child.inner));
    }

    /// A builder for a scope named `name`.
    pub fn builder(name: impl Into<Arc<str>>) -> ScopeBuilder {
        ScopeBuilder::new(name.into())
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
        let builder = ScopeBuilder::new(self.inner.name.clone()).timeout(timeout);
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
    /// [`Cancelled`](crate::error::Cancelled) at their next poll, new ones are refused. Resources are torn down by
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

    /// The scope's state now (this scope only, not its children).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let scope = palisade_scope::Scope::new("jobs");
    /// let _task = scope.spawn(std::future::pending::<()>());
    /// let snapshot = scope.snapshot();
    /// assert_eq!((snapshot.tasks, snapshot.requests, snapshot.closing), (1, 0, false));
    /// # }
    /// ```
    pub fn snapshot(&self) -> ScopeSnapshot {
        ScopeSnapshot {
            tasks: self.inner.tasks.len(),
            requests: self.inner.requests.len(),
            resources: lock(&self.inner.resources).len(),
            closing: self.is_closing(),
            cancelled: self.is_cancelled(),
        }
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
    /// turn when the scope has a [limit](ScopeBuilder::limit), ends with [`Cancelled`](crate::error::Cancelled) when
    /// the scope is cancelled (the future is dropped), and with [`Panicked`](crate::error::Panicked) if it
    /// panics. A closing scope refuses with [`Closed`](palisade_core::rejection::Closed); outside a Tokio runtime the handle
    /// answers an error at once (never a panic).
    pub fn spawn<F>(&self, future: F) -> ScopeTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_task(future, true)
    }

    /// [`spawn`](Self::spawn), taking a turn of the scope's limit for the task's whole life
    /// (`limited`) or not at all: long-lived machinery of the scope (a poller) takes its
    /// turns itself, only while it works.
    pub(crate) fn spawn_task<F>(&self, future: F, limited: bool) -> ScopeTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = self.inner.name.clone();
        if self.is_closing() {
            return ScopeTask::refused(self.closed_error().into(), name);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let err: BoxError = "Scope::spawn needs a Tokio runtime".into();
            return ScopeTask::refused(err, name);
        };
        let token = self.inner.token.clone();
        let limit = self.inner.limit.clone().filter(|_| limited);
        let work = async move {
            let _permit = match limit {
                Some(s) => match s.acquire_owned().await {
                    Ok(p) => Some(p),
                    Err(_) => return None,
                },
                None => None,
            };
            Some(palisade_core::panic::CatchUnwind::new(future).await)
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
        ScopeTask::running(handle, name)
    }

    /// Provides `value` to the scope: its work and its attached children's find it with
    /// [`get`](Scope::get); `teardown` runs once when the scope ends (close, or the last
    /// handle dropped), after every resource provided later was torn down (reverse order),
    /// and after the children's. A panicking teardown is contained (logged).
    ///
    /// A closing scope refuses with [`Closed`](palisade_core::rejection::Closed); the value's teardown then runs on a spawned
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
}
