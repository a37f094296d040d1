//! Two OS processes share one Redis: one quota, one fleet bulkhead and one circuit breaker.
//!
//! The parent test starts a `redis-server` on a free loopback port and runs this same test
//! binary twice as children (`current_exe`, filtered with `--ignored --exact` to the ignored
//! helper [`child_instance`]). The children get the server URL through their own environment
//! (`Command::env`: the parent's environment is not touched). Each child builds its own
//! backend, rate limiter and bulkhead (its own connection and local state), waits at a barrier
//! in Redis so that both run at once, and prints one result line the parent parses.
//!
//! Asserted: the admitted total across both processes equals the quota (exact mode, no refill
//! within the run); the most calls in flight across both processes never exceeds the
//! bulkhead's N (counted by an atomic `INCR`/`DECR` in Redis inside the inner service); and
//! failures recorded by one process open the shared breaker in the other, which recorded
//! nothing. No
//! timed assertions: every wait is a bounded loop that only guards against a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods, missing_docs)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::rejection::{find, BulkheadFull};
use palisade_redis::server::RedisServer;
use palisade_redis::{
    Quota, RedisBackend, RedisBulkheadLayer, RedisCircuitBreakerLayer, RedisCircuitState, RedisRateLimiter,
    Source,
};
use tower::{service_fn, Layer, ServiceExt};

/// Set only in a child's environment, by the parent: the URL of the shared server.
const URL_VAR: &str = "PALISADE_REDIS_TWO_PROCESS_URL";
const QUOTA: u64 = 50;
const CHECKS_PER_CHILD: usize = 200;
const MAX_CONCURRENT: u32 = 3;
const WORKERS_PER_CHILD: usize = 8;
const CALLS_PER_WORKER: usize = 10;
const CALLS_PER_CHILD: usize = WORKERS_PER_CHILD * CALLS_PER_WORKER;
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, PartialEq)]
struct ChildResult {
    admitted: u64,
    bulkhead_admitted: u64,
    bulkhead_refused: u64,
    max_in_flight: u64,
    /// 1 for the process that recorded the failures, 0 for the one that only watched.
    recorder: u64,
    /// 1 when this process saw the fleet's breaker open.
    breaker_open: u64,
}

fn parse(stdout: &str) -> ChildResult {
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("TWO_PROCESS_RESULT ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no result line in the child's output:\n{stdout}"));
    let mut r = ChildResult::default();
    for field in line.split_whitespace() {
        let (name, value) = field.split_once('=').unwrap();
        let value: u64 = value.parse().unwrap();
        match name {
            "admitted" => r.admitted = value,
            "bulkhead_admitted" => r.bulkhead_admitted = value,
            "bulkhead_refused" => r.bulkhead_refused = value,
            "max_in_flight" => r.max_in_flight = value,
            "recorder" => r.recorder = value,
            "breaker_open" => r.breaker_open = value,
            other => panic!("unknown field {other}"),
        }
    }
    r
}

#[test]
fn two_processes_share_one_quota_one_fleet_bulkhead_and_one_breaker() {
    let server = RedisServer::start();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["child_instance", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env(URL_VAR, server.url())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // A guard against a hang, not a timing assertion.
    let until = Instant::now() + Duration::from_secs(120);
    let mut results = Vec::new();
    for child in &mut children {
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > until {
                for c in &mut children {
                    let _ = c.kill();
                }
                panic!("a child process did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {}\n{stdout}\n{stderr}", out.status);
        // The filter must have selected exactly the helper, or nothing was tested.
        assert!(stdout.contains("1 passed"), "the helper did not run:\n{stdout}");
        results.push(parse(&stdout));
    }
    let (a, b) = (&results[0], &results[1]);
    eprintln!("child a: {a:?}\nchild b: {b:?}");
    // 400 checks for a quota of 50 per hour: the fleet admits exactly the quota, never more.
    assert_eq!(a.admitted + b.admitted, QUOTA, "{a:?} {b:?}");
    for r in [a, b] {
        assert_eq!(r.bulkhead_admitted + r.bulkhead_refused, CALLS_PER_CHILD as u64, "{r:?}");
        assert!(r.max_in_flight <= u64::from(MAX_CONCURRENT), "{a:?} {b:?}");
    }
    assert!(a.bulkhead_admitted + b.bulkhead_admitted >= u64::from(MAX_CONCURRENT), "{a:?} {b:?}");
    assert!(a.max_in_flight.max(b.max_in_flight) >= 1, "{a:?} {b:?}");
    // One process recorded failures, the other recorded nothing; both saw the breaker open.
    assert_eq!(a.recorder + b.recorder, 1, "{a:?} {b:?}");
    assert_eq!((a.breaker_open, b.breaker_open), (1, 1), "{a:?} {b:?}");
}

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Waits (bounded, as a hang guard) until both processes have incremented `key`.
async fn barrier(c: &mut redis::aio::MultiplexedConnection, key: &str) {
    let _: u64 = redis::cmd("INCR").arg(key).query_async(c).await.unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let n: u64 = redis::cmd("GET").arg(key).query_async(c).await.unwrap();
        if n >= 2 {
            return;
        }
        assert!(Instant::now() < until, "the other process never reached {key}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The child process's side; run only by the parent test above (it reads its URL from the
/// child's own environment, which only the parent sets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of two_processes_share_one_quota_one_fleet_bulkhead_and_one_breaker"]
async fn child_instance() {
    let Ok(url) = std::env::var(URL_VAR) else {
        eprintln!("{URL_VAR} is not set: this helper runs only as a child of the two-process test");
        return;
    };
    let backend = || RedisBackend::builder(url.clone()).timeout(Duration::from_secs(2)).build().unwrap();
    let limiter =
        RedisRateLimiter::builder("two-process", backend()).tier(Quota::per(QUOTA, HOUR)).build().unwrap();
    let bulkhead = RedisBulkheadLayer::builder("two-process", backend(), MAX_CONCURRENT)
        .lease(Duration::from_secs(60))
        .build()
        .unwrap();
    let breaker = RedisCircuitBreakerLayer::builder("two-process", backend())
        .failure_rate(0.5, 10)
        .time_window(Duration::from_secs(60), 6)
        .wait_in_open(Duration::from_secs(600))
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut c = conn(&url).await;
    // The first process to get here records the failures, the other only watches.
    let role: u64 = redis::cmd("INCR").arg("test:role").query_async(&mut c).await.unwrap();
    let recorder = role == 1;

    // Barrier: both processes have built their layers before either starts.
    barrier(&mut c, "test:barrier:1").await;
    // The rate limit: many more checks than the quota, all at once.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CHECKS_PER_CHILD {
        let l = limiter.clone();
        set.spawn(async move { l.check("client-1", 1).await.unwrap() });
    }
    let mut admitted = 0u64;
    while let Some(d) = set.join_next().await {
        let d = d.unwrap();
        assert_eq!(d.source, Source::Redis, "{d:?}");
        admitted += u64::from(d.allowed);
    }

    barrier(&mut c, "test:barrier:2").await;
    // The fleet bulkhead: the inner service counts calls in flight across both processes.
    let max = Arc::new(AtomicU64::new(0));
    let inner = {
        let (url, max) = (url.clone(), max.clone());
        let c = conn(&url).await;
        service_fn(move |(): ()| {
            let (mut c, max) = (c.clone(), max.clone());
            async move {
                let now: u64 = redis::cmd("INCR").arg("test:in-flight").query_async(&mut c).await?;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _: i64 = redis::cmd("DECR").arg("test:in-flight").query_async(&mut c).await?;
                Ok::<_, redis::RedisError>(())
            }
        })
    };
    let svc = bulkhead.layer(inner);
    let (ok, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut set = tokio::task::JoinSet::new();
    // Workers calling one after another, so both processes contend for the permits a while.
    for _ in 0..WORKERS_PER_CHILD {
        let (svc, ok, refused) = (svc.clone(), ok.clone(), refused.clone());
        set.spawn(async move {
            for _ in 0..CALLS_PER_WORKER {
                match svc.clone().oneshot(()).await {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        assert!(find::<BulkheadFull>(&*e).is_some(), "{e}");
                        refused.fetch_add(1, Ordering::SeqCst);
                        // back off a little so that the refusals do not end the run early
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }

    // The shared breaker: closed for both; failures recorded by one process open the other.
    assert_eq!(breaker.state(), RedisCircuitState::Closed);
    barrier(&mut c, "test:barrier:3").await;
    if recorder {
        for _ in 0..10 {
            breaker.record(true).await;
        }
        assert_eq!(breaker.state(), RedisCircuitState::Open);
    } else {
        // A bounded wait for the poller: a hang guard, not a timing assertion.
        let until = Instant::now() + Duration::from_secs(30);
        while breaker.state() != RedisCircuitState::Open {
            assert!(Instant::now() < until, "the watcher never saw the fleet's breaker open");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let breaker_open = u64::from(breaker.state() == RedisCircuitState::Open);
    println!(
        "TWO_PROCESS_RESULT admitted={admitted} bulkhead_admitted={} bulkhead_refused={} max_in_flight={} \
         recorder={} breaker_open={breaker_open}",
        ok.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
        max.load(Ordering::SeqCst),
        u64::from(recorder),
    );
}
