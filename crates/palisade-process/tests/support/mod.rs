//! Helpers shared by the process tests: /proc inspection and the example worker's path.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_process::ProcessEvent;

/// `(state, ppid, pgrp)` of a process, or `None` if it is gone.
pub fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Children of this test process: `(all, zombies)`.
pub fn children() -> (usize, usize) {
    let me = std::process::id();
    let mut all = 0;
    let mut zombies = 0;
    for pid in all_pids() {
        if let Some((state, ppid, _)) = proc_stat(pid) {
            if ppid == me {
                all += 1;
                if state == 'Z' {
                    zombies += 1;
                }
            }
        }
    }
    (all, zombies)
}

/// Processes still running (not zombies) in any of the process groups `pgids`.
pub fn live_in_groups(pgids: &[u32]) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(
            |&pid| matches!(proc_stat(pid), Some((state, _, pgrp)) if state != 'Z' && pgids.contains(&pgrp)),
        )
        .collect()
}

/// Whether `pid` is gone or dead (a zombie of another parent).
pub fn is_dead(pid: u32) -> bool {
    !matches!(proc_stat(pid), Some((state, _, _)) if state != 'Z')
}

/// Whether `pid` no longer exists at all (it was reaped).
pub fn is_reaped(pid: u32) -> bool {
    proc_stat(pid).is_none()
}

/// Open pipes (children's stdio) and pidfds of this process: what a leaked child leaves
/// behind. Other descriptors (a test runtime's epoll and eventfd, created by another test
/// waiting for its turn) are not counted, so the count does not depend on test scheduling.
pub fn open_fds() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            target.starts_with("pipe:") || target == "anon_inode:[pidfd]"
        })
        .count()
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The example worker built by `cargo test` next to the test binaries.
pub fn echo_worker() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = dir.join("examples").join("echo_worker");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p palisade-process` (which builds the examples)",
        path.display()
    );
    path
}

/// Records every event into a shared vector.
pub fn recorder() -> (Arc<Mutex<Vec<ProcessEvent>>>, impl Fn(&ProcessEvent) + Clone + Send + Sync + 'static) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |e: &ProcessEvent| sink.lock().unwrap().push(e.clone()))
}

/// Pids from the `Spawned` events recorded so far.
pub fn spawned_pids(events: &Mutex<Vec<ProcessEvent>>) -> Vec<u32> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ProcessEvent::Spawned { pid } => Some(*pid),
            _ => None,
        })
        .collect()
}
