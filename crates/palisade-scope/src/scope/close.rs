//! Ending a scope: [`Scope::close`] drains it (stops admitting, waits, cancels the rest,
//! tears the resources down) and reports a [`DrainReport`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use palisade_core::sync::lock;
use palisade_core::time::deadline_from_now;

use super::{Scope, OWN_TASK};

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

impl Scope {
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
    /// [`Closed`](palisade_core::rejection::Closed)) in this scope and its attached descendants, waits up to `deadline` for
    /// the work in flight, cancels what is left (it ends with [`Cancelled`](crate::error::Cancelled)), waits for the
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
