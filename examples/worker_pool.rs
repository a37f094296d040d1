//! worker_pool: a pool of worker processes that grows under a burst of load and shrinks back
//! when the load is gone, behind a bulkhead and a retry.
//!
//! ```sh
//! cargo run --release --example worker_pool --features pool,process
//! ```
//!
//! The binary is its own worker: run with `--worker`, it serves jobs on stdin/stdout with
//! `palisade::process::worker::serve_stdio` (length-prefixed binary frames). A job is a small
//! proof of work, expensive to do and cheap to check: 16 bytes, `n` and `bits` as big-endian
//! `u64`s, asking for a `nonce` such that [`hash`]`(n, nonce)` starts with `bits` zero bits
//! (about 2^`bits` hashes, run on the worker's blocking pool); the answer is 16 bytes, `n`
//! and the first such `nonce`, checked by the caller with [`verify`].
//! `--crash-after K` makes a worker exit abruptly when its `K`-th job arrives, standing in
//! for a worker that dies mid-job.
//!
//! Without `--worker` it runs the demo:
//!
//! - a [`Pool`] of 1 to 4 [`WorkerProcess`]es (one job at a time each), made by the
//!   `MakeWorker` that re-executes this binary with `--worker --crash-after 40`;
//! - a retry (3 attempts) in front, whose classifier re-sends a job lost with its worker
//!   (crashed, or shut down under it) but not an error the worker answered with; the pool
//!   meanwhile evicts the dead worker and makes a replacement;
//! - a bulkhead in front of that, admitting 16 jobs at a time so the pool's queue never
//!   overflows;
//! - a burst of 240 jobs sent at once, then nothing: the pool scales up to 4 workers, then
//!   retires one per second of low utilisation back to 1, and shuts down gracefully. Every
//!   answer is checked; the process exits non-zero unless each job was answered correctly.
//!
//! The integration test `tests/worker_pool.rs` runs this binary as its workers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::bulkhead::BulkheadLayer;
use palisade::classify::{ClassifyExt, DefaultClassifier};
use palisade::pool::{Pool, PoolEvent, PoolSnapshot};
use palisade::process::codec::LengthPrefixed;
use palisade::process::worker::serve_stdio;
use palisade::process::{MakeWorker, ProcessEvent, WorkerError};
use palisade::retry::{Backoff, Jitter, RetryLayer};
use tower::{BoxError, ServiceBuilder, ServiceExt};

const MIN_WORKERS: usize = 1;
const MAX_WORKERS: usize = 4;
/// Jobs in the burst, all sent at once.
const JOBS: u64 = 240;
/// Difficulty of a job: about 4 million hashes, a few milliseconds in a release build.
const BITS: u64 = 22;
/// Each worker exits abruptly when its 40th job arrives.
const CRASH_AFTER: u64 = 40;

/// A 64-bit mix of `n` and `nonce` (splitmix64's finaliser).
fn hash(n: u64, nonce: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nonce;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The work of one job: the first nonce whose hash with `n` starts with `bits` zero bits.
fn solve(n: u64, bits: u64) -> u64 {
    (0..=u64::MAX).find(|&nonce| u64::from(hash(n, nonce).leading_zeros()) >= bits).unwrap_or(u64::MAX)
}

/// Whether `answer` solves job `n`: it names `n` and a nonce with enough zero bits.
fn verify(n: u64, bits: u64, answer: &[u8]) -> bool {
    match (answer.get(..8).and_then(read_u64), answer.get(8..).and_then(read_u64)) {
        (Some(echo), Some(nonce)) => echo == n && u64::from(hash(n, nonce).leading_zeros()) >= bits,
        _ => false,
    }
}

/// A job on the wire: `n` and `bits`, big-endian.
fn job(n: u64, bits: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16);
    bytes.extend_from_slice(&n.to_be_bytes());
    bytes.extend_from_slice(&bits.to_be_bytes());
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
            let (Some(n), Some(bits)) = (req.get(..8).and_then(read_u64), req.get(8..).and_then(read_u64))
            else {
                return Err("a job is 16 bytes: `n` and `bits`, big-endian");
            };
            if bits > 32 {
                return Err("at most 32 bits of work per job");
            }
            // CPU work goes to the blocking pool, never on the runtime's thread.
            let nonce =
                tokio::task::spawn_blocking(move || solve(n, bits)).await.map_err(|_| "the job panicked")?;
            let mut answer = n.to_be_bytes().to_vec();
            answer.extend_from_slice(&nonce.to_be_bytes());
            Ok(answer)
        }
    }))
}

// === demo side ===

/// Whether a job failed because its worker went away (rather than by the worker's answer).
fn lost_with_its_worker(result: &Result<Vec<u8>, BoxError>) -> bool {
    matches!(result, Err(e) if e.downcast_ref::<WorkerError>().is_some_and(WorkerError::is_fatal))
}

fn print_snapshot(start: Instant, label: &str, s: &PoolSnapshot) {
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
    let make = MakeWorker::builder(&exe)
        .name("pow")
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

    let pool = Pool::builder()
        .name("pow")
        .min_size(MIN_WORKERS)
        .max_size(MAX_WORKERS)
        .member_concurrency(1)
        .max_queue(64)
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

    // A job lost with its worker (crashed, killed, shut down under it) is sent again, to
    // another worker; an error the worker answered with is not (it would answer it again).
    // Three attempts bound the damage of a job that crashes every worker it meets.
    let retry = RetryLayer::builder()
        .name("pow")
        .classifier(DefaultClassifier.retryable_if(lost_with_its_worker))
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(5)))
        .jitter(Jitter::Full)
        .build()?;
    let retries = retry.handle();
    let bulkhead = BulkheadLayer::builder()
        .name("pow")
        .max_concurrent(16)
        .when_full(palisade_core::WhenFull::wait(Duration::MAX))
        .build()?;
    let admitted = bulkhead.handle();
    let service = ServiceBuilder::new().layer(bulkhead).layer(retry).service(pool);

    // The burst: every job at once; the bulkhead admits 16, the rest wait for a permit.
    let mut jobs = tokio::task::JoinSet::new();
    for n in 0..JOBS {
        let service = service.clone();
        jobs.spawn(async move { (n, service.oneshot(job(n, BITS)).await) });
    }
    let (mut answered, mut wrong, mut failed) = (0u64, 0u64, 0u64);
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = ticker.tick() => print_snapshot(start, "load", &handle.snapshot()),
            done = jobs.join_next() => match done {
                None => break,
                Some(Ok((n, Ok(answer)))) if verify(n, BITS, &answer) => answered += 1,
                Some(Ok((n, Ok(_)))) => {
                    eprintln!("job {n}: wrong answer");
                    wrong += 1;
                }
                Some(Ok((n, Err(e)))) => {
                    eprintln!("job {n} failed: {e}");
                    failed += 1;
                }
                Some(Err(e)) => return Err(e.into()),
            },
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
    println!();
    println!("jobs:      {answered} of {JOBS} answered correctly, {wrong} wrong, {failed} failed");
    println!("retry:     {} requests, {} retries", r.requests, r.retries);
    println!("bulkhead:  {} waited for a permit (mean wait {:?})", b.waited, b.mean_wait);
    println!(
        "processes: {} spawned, {} exited cleanly, {} died, {} killed, {} still running",
        p.spawned,
        p.exited_success,
        p.exited_failure,
        p.killed_other + p.killed_cancelled + p.killed_timeout,
        p.running
    );
    println!("shutdown:  drained {}, {} abandoned", report.drained, report.abandoned);
    println!("elapsed:   {:.1}s", start.elapsed().as_secs_f64());
    Ok(answered == JOBS && wrong == 0 && failed == 0 && report.drained && p.running == 0)
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
