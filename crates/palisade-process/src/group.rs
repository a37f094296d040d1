//! Killing a child's whole process group, and a guard that does it on drop.
//!
//! Every child is spawned as the leader of a new process group (`setpgid(0, 0)` through
//! `CommandExt::process_group(0)`), so its process group id is its pid and everything it
//! forks stays in that group unless it calls `setsid`/`setpgid` itself. `killpg(pgid,
//! SIGKILL)` then ends the child and its grandchildren together.
//!
//! The group is killed while the leader is still unreaped (alive or a zombie) wherever that
//! is possible, so the id cannot have been reused. After a leader exits on its own palisade
//! reaps it and then kills the group's stragglers: the id is still held by those stragglers
//! if any exist, and if none do the call finds no group (`ESRCH`).

use std::sync::Arc;

use tokio::process::Child;
use tokio::time::Instant;

use crate::event::Telemetry;
use crate::output::{KillReason, Termination};

/// Sends SIGKILL to the process group `pgid`. Never signals pid 0 or 1 (which would mean
/// "our own group" or "every process").
#[cfg(unix)]
pub(crate) fn kill_group(pgid: u32) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw <= 1 {
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(raw) {
        if let Err(err) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
            if err != rustix::io::Errno::SRCH {
                tracing::debug!(target: "palisade", pgid, error = %err, "killpg failed");
            }
        }
    }
}

/// Without process groups, only the child itself can be killed (by `Child::start_kill`).
#[cfg(not(unix))]
pub(crate) fn kill_group(_pgid: u32) {}

/// Owns a running child; if dropped before [`finish`](Self::finish) it kills the child's
/// process group and reaps the child (in a spawned task, or through Tokio's orphan reaper
/// when no runtime is running).
#[derive(Debug)]
pub(crate) struct ChildGuard {
    child: Option<Child>,
    pid: u32,
    started: Instant,
    telemetry: Arc<Telemetry>,
}

impl ChildGuard {
    pub(crate) fn new(child: Child, started: Instant, telemetry: Arc<Telemetry>) -> Self {
        let pid = child.id().unwrap_or(0);
        telemetry.spawned(pid);
        Self { child: Some(child), pid, started, telemetry }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Kills the group and waits for the leader; reports the kill (as a crash of a worker
    /// with `crashed` requests in flight, when given).
    pub(crate) async fn kill(mut self, reason: KillReason, crashed: Option<usize>) -> Termination {
        kill_group(self.pid);
        // The child stays in the guard while we wait: if this future is dropped meanwhile,
        // `Drop` still reaps it and reports it.
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.child = None;
        let termination = Termination::Killed(reason);
        self.telemetry.ended(self.pid, termination, self.started.elapsed(), crashed);
        termination
    }

    /// The leader has been reaped with `termination`: report it (as a crash of a worker
    /// with `crashed` requests in flight, when given).
    pub(crate) fn finish(mut self, termination: Termination, crashed: Option<usize>) {
        self.child = None;
        self.telemetry.ended(self.pid, termination, self.started.elapsed(), crashed);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        kill_group(self.pid);
        let _ = child.start_kill();
        self.telemetry.ended(
            self.pid,
            Termination::Killed(KillReason::Cancelled),
            self.started.elapsed(),
            None,
        );
        // Reap it now rather than leaving a zombie until the next SIGCHLD: the task finishes
        // as soon as the kernel has delivered SIGKILL. Without a runtime, `kill_on_drop`
        // and Tokio's orphan queue reap it.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}
