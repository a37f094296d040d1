#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::disallowed_methods)]
//! A pool of real worker processes (`Pool` over `MakeWorker`), behind a bulkhead and a
//! retry: the pool grows under a burst within its bounds, every job is answered correctly
//! exactly once, a crashed worker is replaced and its job sent again, and shutdown drains.
//!
//! The workers are the `worker_pool` example binary run with `--worker` (it solves small
//! proofs of work; see `examples/worker_pool.rs`). A plain `cargo test` builds it next to
//! this test; when it is missing or older than its source or this test (as after
//! `cargo test --test worker_pool`), the test builds it with the same profile and features.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use palisade::bulkhead::BulkheadLayer;
use palisade::classify::{ClassifyExt, DefaultClassifier};
use palisade::pool::{Pool, PoolEvent};
use palisade::process::{MakeWorker, ProcessEvent, ProcessHandle, WorkerError};
use palisade::rejection::{find, Closed};
use palisade::retry::{Backoff, Jitter, RetryLayer};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// About 65 000 hashes per job: a millisecond or two in a debug build.
const BITS: u64 = 16;
const MAX_WORKERS: usize = 4;

// === the worker binary ===

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `target/<profile>/examples/worker_pool`, built first if missing or stale.
fn worker_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test runs from target/<profile>/deps/; examples live in target/<profile>/examples/.
        let test_exe = std::env::current_exe().unwrap();
        let profile_dir = test_exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
        let binary =
            profile_dir.join("examples").join(format!("worker_pool{}", std::env::consts::EXE_SUFFIX));
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("worker_pool.rs");
        let newest_input = [modified(&source), modified(&test_exe)].into_iter().flatten().max();
        if modified(&binary).is_none_or(|built| newest_input.is_some_and(|input| built < input)) {
            build_worker(profile_dir);
        }
        assert!(binary.exists(), "`cargo build --example worker_pool` did not produce {}", binary.display());
        binary
    })
}

/// Builds the example with this test's profile and features (a no-op when it is fresh).
fn build_worker(profile_dir: &Path) {
    let features: Vec<&str> = [
        ("retry", cfg!(feature = "retry")),
        ("circuit-breaker", cfg!(feature = "circuit-breaker")),
        ("rate-limit", cfg!(feature = "rate-limit")),
        ("bulkhead", cfg!(feature = "bulkhead")),
        ("pool", cfg!(feature = "pool")),
        ("pipeline", cfg!(feature = "pipeline")),
        ("process", cfg!(feature = "process")),
        ("fallback", cfg!(feature = "fallback")),
        ("chaos", cfg!(feature = "chaos")),
        ("http", cfg!(feature = "http")),
        ("grpc", cfg!(feature = "grpc")),
        ("metrics", cfg!(feature = "metrics")),
        ("serde", cfg!(feature = "serde")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let output = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--example", "worker_pool", "--no-default-features", "--profile", profile])
        .arg("--features")
        .arg(features.join(","))
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "building the worker_pool example failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// === jobs (as in the example) ===

fn hash(n: u64, nonce: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nonce;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn job(n: u64) -> Vec<u8> {
    [n.to_be_bytes(), BITS.to_be_bytes()].concat()
}

/// The answer names job `n` and a nonce whose hash has `BITS` leading zeros.
fn assert_solves(n: u64, answer: &[u8]) {
    assert_eq!(answer.len(), 16, "job {n}: answer {answer:?}");
    let echo = u64::from_be_bytes(answer[..8].try_into().unwrap());
    let nonce = u64::from_be_bytes(answer[8..].try_into().unwrap());
    assert_eq!(echo, n, "job {n} got the answer to job {echo}");
    assert!(u64::from(hash(n, nonce).leading_zeros()) >= BITS, "job {n}: nonce {nonce} is not a solution");
}

// === fixtures ===

/// Live children, and the most seen at once.
#[derive(Default)]
struct Running {
    now: AtomicI64,
    peak: AtomicI64,
}

fn workers(extra_args: &[&str]) -> (MakeWorker, ProcessHandle, Arc<Running>) {
    let running = Arc::new(Running::default());
    let counter = running.clone();
    let make = MakeWorker::builder(worker_binary())
        .name("pow")
        .arg("--worker")
        .args(extra_args)
        .max_in_flight(1)
        .shutdown_grace(Duration::from_secs(5))
        .on_event(move |e: &ProcessEvent| match e {
            ProcessEvent::Spawned { .. } => {
                let now = counter.now.fetch_add(1, Ordering::SeqCst) + 1;
                counter.peak.fetch_max(now, Ordering::SeqCst);
            }
            ProcessEvent::Exited { .. } | ProcessEvent::Killed { .. } => {
                counter.now.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        })
        .build()
        .unwrap();
    let handle = make.handle();
    (make, handle, running)
}

fn lost_with_its_worker(result: &Result<Vec<u8>, BoxError>) -> bool {
    matches!(result, Err(e) if e.downcast_ref::<WorkerError>().is_some_and(WorkerError::is_fatal))
}

/// Waits (in short steps, 5 s at most) until every child has exited.
async fn all_exited(processes: &ProcessHandle) {
    for _ in 0..500 {
        if processes.snapshot().running == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("children still running: {:?}", processes.snapshot());
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_scales_the_pool_up_within_bounds_and_every_job_is_answered_once() {
    const JOBS: u64 = 64;
    let (make, processes, running) = workers(&[]);
    let peak_members = Arc::new(AtomicUsize::new(0));
    let peak = peak_members.clone();
    let pool = Pool::builder()
        .name("pow")
        .min_size(1)
        .max_size(MAX_WORKERS)
        .member_concurrency(1)
        .max_queue(64)
        .on_event(move |e: &PoolEvent| {
            if let PoolEvent::ScaledUp { members, .. } = e {
                peak.fetch_max(*members, Ordering::SeqCst);
            }
        })
        .build(make)
        .unwrap();
    let handle = pool.handle();
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .jitter(Jitter::None)
        .classifier(DefaultClassifier.retryable_if(lost_with_its_worker))
        .build()
        .unwrap();
    let retries = retry.handle();
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent(16)
        .when_full(palisade_core::WhenFull::wait(Duration::MAX))
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(bulkhead).layer(retry).service(pool);

    let mut jobs = tokio::task::JoinSet::new();
    for n in 0..JOBS {
        let service = service.clone();
        jobs.spawn(async move { (n, service.oneshot(job(n)).await) });
    }
    let mut answered = vec![0u32; JOBS as usize];
    while let Some(done) = jobs.join_next().await {
        let (n, answer) = done.unwrap();
        assert_solves(n, &answer.unwrap());
        answered[n as usize] += 1;
    }
    assert!(answered.iter().all(|&times| times == 1), "{answered:?}");

    // Each job went to a worker exactly once: no retry, no failure, and the members served
    // JOBS calls between them.
    let r = retries.snapshot();
    assert_eq!((r.requests, r.attempts, r.retries), (JOBS, JOBS, 0), "{r:?}");
    let s = handle.snapshot();
    assert_eq!(s.members.iter().map(|m| m.served).sum::<u64>(), JOBS, "{s:?}");
    assert_eq!((s.in_flight, s.queued, s.evicted, s.rejected), (0, 0, 0, 0), "{s:?}");

    // It scaled up, never past its maximum, in members and in processes.
    let peak_members = peak_members.load(Ordering::SeqCst);
    assert!(peak_members > 1, "the pool never grew: {s:?}");
    assert!(peak_members <= MAX_WORKERS, "{peak_members} members");
    assert!(s.members.len() > 1 && s.members.len() <= MAX_WORKERS, "{s:?}");
    assert_eq!(s.made, s.members.len() as u64, "{s:?}");
    let peak_processes = running.peak.load(Ordering::SeqCst);
    assert!(peak_processes > 1 && peak_processes <= MAX_WORKERS as i64, "{peak_processes} children at once");
    assert_eq!(processes.snapshot().spawned, s.made);

    let report = handle.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "{report:?}");
    all_exited(&processes).await;
    let p = processes.snapshot();
    assert_eq!((p.exited_success, p.exited_failure, p.crashed), (p.spawned, 0, 0), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_the_queued_jobs_then_every_worker_exits() {
    const JOBS: u64 = 12;
    let (make, processes, _) = workers(&[]);
    let pool = Pool::builder()
        .name("pow")
        .min_size(1)
        .max_size(2)
        .member_concurrency(1)
        .max_queue(32)
        .build(make)
        .unwrap();
    let handle = pool.handle();

    // Twelve calls accepted (most of them queued), then the shutdown.
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..JOBS {
        let mut svc = pool.clone();
        let call = svc.ready().await.unwrap().call(job(n));
        calls.spawn(async move { (n, call.await) });
    }
    let report = handle.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained, "{report:?}");
    assert_eq!((report.abandoned, report.in_flight), (0, 0), "{report:?}");

    let mut answered = 0;
    while let Some(done) = calls.join_next().await {
        let (n, answer) = done.unwrap();
        assert_solves(n, &answer.unwrap());
        answered += 1;
    }
    assert_eq!(answered, JOBS);

    // The pool takes nothing more.
    let err = pool.clone().oneshot(job(JOBS)).await.unwrap_err();
    assert!(find::<Closed>(err.as_ref()).is_some(), "{err}");

    // Every worker saw its stdin close and exited by itself: none killed, none crashed.
    all_exited(&processes).await;
    let p = processes.snapshot();
    assert!(p.spawned >= 1);
    assert_eq!(
        (p.exited_success, p.exited_failure, p.killed_other, p.killed_cancelled),
        (p.spawned, 0, 0, 0),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_is_replaced_and_its_job_sent_again() {
    const JOBS: u64 = 10;
    // Every worker exits abruptly when its third job arrives.
    let (make, processes, _) = workers(&["--crash-after", "3"]);
    let pool = Pool::builder()
        .name("pow")
        .min_size(1)
        .max_size(2)
        .member_concurrency(1)
        .make_backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build(make)
        .unwrap();
    let handle = pool.handle();
    let retry = RetryLayer::builder()
        .max_attempts(4)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .jitter(Jitter::None)
        .classifier(DefaultClassifier.retryable_if(lost_with_its_worker))
        .build()
        .unwrap();
    let retries = retry.handle();
    let service = ServiceBuilder::new().layer(retry).service(pool);

    // One job at a time. A worker that crashes received exactly three jobs and answered two,
    // and at most two workers are alive at the end, so ten answers need three crashes or
    // more; each crash loses one job, which the retry sends to another worker.
    for n in 0..JOBS {
        let answer = service.clone().oneshot(job(n)).await.unwrap();
        assert_solves(n, &answer);
    }
    let r = retries.snapshot();
    assert_eq!((r.requests, r.gave_up), (JOBS, 0), "{r:?}");
    assert!(r.retries >= 3 && r.succeeded_after_retry >= 1, "{r:?}");
    let s = handle.snapshot();
    assert!(s.evicted >= 3, "{s:?}");
    assert!(s.made >= 4, "{s:?}");
    assert!(!s.members.is_empty() && s.members.len() <= 2, "{s:?}");

    let report = handle.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "{report:?}");
    all_exited(&processes).await;
    let p = processes.snapshot();
    assert!(p.exited_failure >= 3, "{p:?}");
    assert_eq!(p.exited_success + p.exited_failure, p.spawned, "{p:?}");
}
