//! Many spawns with random cancellations and timeouts leave no child, zombie, grandchild
//! or pipe behind. Counts the children of this test process through /proc, so this file
//! is its own test binary and its tests run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use palisade_process::{KillReason, ProcessRequest, ProcessService, Termination};
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};

use support::{children, eventually, live_in_groups, open_fds, recorder, spawned_pids};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A small deterministic generator (xorshift) so a failure can be replayed.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn storm(spawns: usize) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (events, listener) = recorder();
    let quick =
        ProcessService::builder("/bin/cat").max_concurrency(32).on_event(listener.clone()).build().unwrap();
    // The shell's background sleep is a grandchild in the same process group.
    let slow = ProcessService::builder("/bin/sh")
        .args(["-c", "sleep 5 & sleep 5"])
        .timeout(Duration::from_millis(40))
        .max_concurrency(32)
        .on_event(listener)
        .build()
        .unwrap();

    // Warm up (Tokio's SIGCHLD handler and its pipe are created on the first spawn).
    quick.clone().oneshot(ProcessRequest::new()).await.unwrap();
    let fds_before = open_fds();
    assert_eq!(children(), (0, 0));

    let mut rng = Xorshift(0x5eed_1234_abcd_0001);
    let mut calls = JoinSet::new();
    let (mut ok, mut timed_out, mut cancelled) = (0, 0, 0);
    for _ in 0..spawns {
        let roll = rng.next() % 10;
        let mut svc = if roll < 6 { quick.clone() } else { slow.clone() };
        let cancel_after = Duration::from_millis(rng.next() % 30);
        svc.ready().await.unwrap();
        let call = svc.call(ProcessRequest::new().stdin("x"));
        calls.spawn(async move {
            match roll {
                // cat that exits, or a sleeping group killed at its timeout
                0..=7 => Some(call.await.unwrap().termination()),
                _ => tokio::time::timeout(cancel_after, call).await.ok().map(|r| r.unwrap().termination()),
            }
        });
        // Keep the number of live tasks bounded.
        while calls.len() > 64 {
            count(calls.join_next().await.unwrap().unwrap(), &mut ok, &mut timed_out, &mut cancelled);
        }
    }
    while let Some(done) = calls.join_next().await {
        count(done.unwrap(), &mut ok, &mut timed_out, &mut cancelled);
    }
    assert_eq!(ok + timed_out + cancelled, spawns);
    assert!(
        timed_out > 0 && cancelled > 0,
        "the mix ran: {ok} ok, {timed_out} timed out, {cancelled} cancelled"
    );

    // Every child reaped, no zombie, no pipe left open, no grandchild alive.
    assert!(
        eventually(Duration::from_secs(5), || children() == (0, 0)).await,
        "children left (all, zombies): {:?}",
        children()
    );
    assert!(
        eventually(Duration::from_secs(5), || open_fds() <= fds_before).await,
        "fds: {} > {fds_before}",
        open_fds()
    );
    let pids = spawned_pids(&events);
    assert_eq!(pids.len(), spawns + 1);
    assert!(
        eventually(Duration::from_secs(5), || live_in_groups(&pids).is_empty()).await,
        "processes left in the children's groups: {:?}",
        live_in_groups(&pids)
    );
    let snap = quick.handle().snapshot();
    let slow_snap = slow.handle().snapshot();
    assert_eq!(snap.running + slow_snap.running, 0);
}

fn count(t: Option<Termination>, ok: &mut usize, timed_out: &mut usize, cancelled: &mut usize) {
    match t {
        Some(Termination::Exited(0)) => *ok += 1,
        Some(Termination::Killed(KillReason::Timeout)) => *timed_out += 1,
        None => *cancelled += 1,
        Some(other) => panic!("unexpected end: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_spawns_leave_nothing_behind() {
    storm(500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10,000 spawns take a while; run with --ignored"]
async fn ten_thousand_spawns_leave_nothing_behind() {
    storm(10_000).await;
}

#[cfg(feature = "json")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_leave_nothing_behind_even_while_handles_remain() {
    use palisade_process::{MakeWorker, WorkerErrorKind};

    let _serial = ONE_AT_A_TIME.lock().await;
    let make = MakeWorker::builder(support::echo_worker()).arg("--binary").log_stderr(false).build().unwrap();
    // Warm up.
    make.spawn().unwrap().shutdown().await;
    assert!(eventually(Duration::from_secs(5), || children() == (0, 0)).await);
    let fds_before = open_fds();

    let mut kept = Vec::new();
    for i in 0..30 {
        let worker = make.spawn().unwrap();
        assert_eq!(worker.clone().oneshot(b"hi".to_vec()).await.unwrap(), b"hi");
        match i % 3 {
            0 => {
                let err = worker.clone().oneshot(b"crash".to_vec()).await.unwrap_err();
                assert_eq!(err.kind(), WorkerErrorKind::Crashed);
                kept.push(worker);
            }
            1 => {
                worker.shutdown().await;
                kept.push(worker);
            }
            _ => drop(worker),
        }
    }
    assert!(eventually(Duration::from_secs(5), || children() == (0, 0)).await, "{:?}", children());
    assert!(
        eventually(Duration::from_secs(5), || open_fds() <= fds_before).await,
        "fds: {} > {fds_before} with {} handles kept",
        open_fds(),
        kept.len()
    );
    let snap = make.handle().snapshot();
    assert_eq!((snap.spawned, snap.crashed, snap.running), (31, 10, 0));
}
