//! worker_pool: a pool of worker processes that grows under a burst of load and shrinks back
//! when the load is gone, behind a bulkhead and a retry.
//!
//! ```sh
//! cargo run --release --example worker_pool
//! ```
//!
//! The binary is its own worker: run with `--worker`, it serves jobs on stdin/stdout with
//! `palisade::process::worker::serve_stdio` (length-prefixed binary frames). A job is 16
//! bytes, `n` and `rounds` as big-endian `u64`s; the answer is the 8-byte [`checksum`] of
//! `n` after `rounds` rounds of mixing (a little CPU work, run on the blocking pool).
//! `--crash-after K` makes a worker exit abruptly when its `K`-th job arrives, standing in
//! for a worker that dies mid-job.
//!
//! Without `--worker` it runs the demo:
//!
//! - a [`PoolService`] of 1 to 4 [`WorkerProcess`]es (one job at a time each), made by the
//!   `MakeWorker` that re-executes this binary with `--worker --crash-after 60`;
//! - a retry (3 attempts) in front, so the job a crashing worker takes down is sent again
//!   (the pool evicts the dead worker and makes a replacement);
//! - a bulkhead in front of that, admitting 16 jobs at a time so the pool's queue never
//!   overflows;
//! - 16 clients sending jobs back to back for 3 seconds, then nothing: the pool scales up
//!   to 4 workers, then retires one per second of low utilisation back to 1, and shuts down
//!   gracefully. Every answer is checked; the process exits non-zero if one is wrong.
//!
//! The integration test `tests/worker_pool.rs` runs this binary as its workers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::bulkhead::BulkheadLayer;
use palisade::pool::{PoolEvent, PoolService, Snapshot};
use palisade::process::codec::LengthPrefixed;
use palisade::process::worker::serve_stdio;
use palisade::process::{ProcessEvent, WorkerProcess};
use palisade::retry::{Backoff, Jitter, RetryLayer};
use tower::{BoxError, ServiceBuilder, ServiceExt};

const MIN_WORKERS: usize = 1;
const MAX_WORKERS: usize = 4;
const CLIENTS: usize = 16;
const BURST: Duration = Duration::from_secs(3);
/// Rounds of mixing per job: a few milliseconds of CPU in a release build.
const ROUNDS: u64 = 3_000_000;
/// Each worker exits abruptly when its 60th job arrives.
const CRASH_AFTER: u64 = 60;

/// The work of one job: `rounds` rounds of xorshift-multiply mixing of `n`.
fn checksum(n: u64, rounds: u64) -> u64 {
    let mut x = n ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    x
}

/// A job on the wire: `n` and `rounds`, big-endian.
fn job(n: u64, rounds: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16);
    bytes.extend_from_slice(&n.to_be_bytes());
    bytes.extend_from_slice(&rounds.to_be_bytes());
    bytes
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

// === worker side ===

/// Serves jobs on stdin/stdout until stdin is closed (the pool retiring this worker).
fn worker(crash_after: Option<u64>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let received = Arc::new(AtomicU64::new(0));
    runtime.block_on(serve_stdio(LengthPrefixed, move |req: Vec<u8>| {
        let count = received.fetch_add(1, Ordering::Relaxed) + 1;
        if crash_after == Some(count) {
            eprintln!("worker {}: crashing on job {count}", std::process::id());
            std::process::exit(70);
        }
        async move {
            let (Some(n), Some(rounds)) = (
                req.get(..8).and_then(read_u64),
                req.get(8..).and_then(read_u64),
            ) else {
                return Err("a job is 16 bytes: `n` and `rounds`, big-endian");
            };
            // CPU work goes to the blocking pool, never on the runtime's thread.
            let sum = tokio::task::spawn_blocking(move || checksum(n, rounds))
                .await
                .map_err(|_| "the job panicked")?;
            Ok(sum.to_be_bytes().to_vec())
        }
    }))
}

// === demo side ===

fn print_snapshot(start: Instant, label: &str, s: &Snapshot) {
    let served: Vec<String> = s.members.iter().map(|m| format!("#{}:{}", m.id, m.served)).collect();
    println!(
        "{:>6.2}s {label:<8} members {} [{}]  in flight {:>2}  queued {:>2}  made {:>2}  retired {:>2}  evicted {}",
        start.elapsed().as_secs_f64(),
        s.members.len(),
        served.join(" "),
        s.in_flight,
        s.queued,
        s.made,
        s.retired,
        s.evicted,
    );
}

async fn demo() -> Result<bool, BoxError> {
    let start = Instant::now();
    let exe = std::env::current_exe()?;
    let make = WorkerProcess::builder(&exe)
        .name("checksum")
        .args(["--worker", "--crash-after", &CRASH_AFTER.to_string()])
        .max_in_flight(1)
        .shutdown_grace(Duration::from_secs(2))
        .on_event(move |e: &ProcessEvent| {
            if let ProcessEvent::Crashed { pid, termination, in_flight } = e {
                println!(
                    "{:>6.2}s worker {pid} crashed ({termination:?}) with {in_flight} job(s) in flight",
                    start.elapsed().as_secs_f64()
                );
            }
        })
        .build()?;
    let processes = make.handle();

    let pool = PoolService::builder()
        .name("checksum")
        .min_size(MIN_WORKERS)
        .max_size(MAX_WORKERS)
        .member_concurrency(1)
        .queue_capacity(64)
        .scale_down(0.3, Duration::from_secs(1))
        .housekeeping_interval(Duration::from_millis(100))
        .on_event(move |e: &PoolEvent| match e {
            PoolEvent::ScaledUp { member, members, reason } => println!(
                "{:>6.2}s + worker #{member} ({reason:?}): {members} now",
                start.elapsed().as_secs_f64()
            ),
            PoolEvent::ScaledDown { member, members, reason } => println!(
                "{:>6.2}s - worker #{member} ({reason:?}): {members} now",
                start.elapsed().as_secs_f64()
            ),
            PoolEvent::Evicted { member, members, reason } => println!(
                "{:>6.2}s x worker #{member} evicted ({reason:?}): {members} now",
                start.elapsed().as_secs_f64()
            ),
            _ => {}
        })
        .build(make)?;
    let handle = pool.handle();

    let retry = RetryLayer::builder()
        .name("checksum")
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(5)))
        .jitter(Jitter::Full)
        .build()?;
    let retries = retry.handle();
    let bulkhead = BulkheadLayer::builder().name("checksum").max_concurrent(16).build()?;
    let admitted = bulkhead.handle();
    let service = ServiceBuilder::new().layer(bulkhead).layer(retry).service(pool);

    // The burst: clients sending jobs back to back.
    let answered = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let stop = tokio::time::Instant::now() + BURST;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (service, answered, wrong, failed, next) =
            (service.clone(), answered.clone(), wrong.clone(), failed.clone(), next.clone());
        clients.spawn(async move {
            while tokio::time::Instant::now() < stop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                match service.clone().oneshot(job(n, ROUNDS)).await {
                    Ok(answer) if read_u64(&answer) == Some(checksum(n, ROUNDS)) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("job {n} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = ticker.tick() => print_snapshot(start, "load", &handle.snapshot()),
            done = clients.join_next() => if done.is_none() { break },
        }
    }
    print_snapshot(start, "idle", &handle.snapshot());

    // Idleness: the pool retires a worker per second of low utilisation, back to one.
    let idle_deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while handle.snapshot().members.len() > MIN_WORKERS && tokio::time::Instant::now() < idle_deadline {
        ticker.tick().await;
        print_snapshot(start, "idle", &handle.snapshot());
    }

    let report = handle.shutdown(Duration::from_secs(5)).await;
    print_snapshot(start, "shutdown", &handle.snapshot());
    drop(service);
    // Retired workers exit once their stdin closes; give the last ones a moment.
    let exit_deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while processes.snapshot().running > 0 && tokio::time::Instant::now() < exit_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let p = processes.snapshot();
    let r = retries.snapshot();
    let b = admitted.snapshot();
    let (answered, wrong, failed) =
        (answered.load(Ordering::Relaxed), wrong.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!();
    println!("jobs:      {answered} answered correctly, {wrong} wrong, {failed} failed");
    println!("retry:     {} requests, {} retries", r.requests, r.retries);
    println!("bulkhead:  {} waited for a permit (mean wait {:?})", b.waited, b.mean_wait);
    println!(
        "processes: {} spawned, {} exited cleanly, {} crashed, {} killed, {} still running",
        p.spawned,
        p.exited_success,
        p.crashed,
        p.killed_other + p.killed_cancelled + p.killed_timeout,
        p.running
    );
    println!("shutdown:  drained {}, {} abandoned", report.drained, report.abandoned);
    println!("elapsed:   {:.1}s", start.elapsed().as_secs_f64());
    Ok(wrong == 0 && failed == 0 && answered > 0 && report.drained && p.running == 0)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--worker") {
        let crash_after = args
            .iter()
            .position(|a| a == "--crash-after")
            .and_then(|i| args.get(i + 1))
            .and_then(|k| k.parse().ok());
        return Ok(worker(crash_after)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if runtime.block_on(demo())? {
        Ok(())
    } else {
        std::process::exit(1);
    }
}
