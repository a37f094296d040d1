//! Review, wave 5: more cases of issue 13's kinds in the bulkheads — keyed state under a
//! flood of hostile keys (1), the adaptive limits and limiters against concurrency-limits'
//! code and tests (3), and limits changed at run time (5).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_bulkhead::adaptive::{Aimd, Fixed, Gradient2, LimitAlgorithm, Sample, Vegas};
use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
use palisade_core::rejection::KeySetFull;
use palisade_core::BoxError;
use palisade_core::WhenFull;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// Calls running inside the inner service per key, and the most seen at once per key.
#[derive(Default)]
struct Inside {
    now: HashMap<u64, usize>,
    peak: HashMap<u64, usize>,
}

/// Keys from here on are hostile: not counted (a count per key would be the test's own
/// unbounded memory).
const HOSTILE: u64 = 1_000_000;

/// A keyed inner service: a request `(key, gate)` runs until its gate fires (or at once
/// without one), counted per key while inside (keys below [`HOSTILE`]).
fn counted(
    inside: Arc<Mutex<Inside>>,
) -> impl Service<(u64, Option<oneshot::Receiver<()>>), Response = (), Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(move |(key, gate): (u64, Option<oneshot::Receiver<()>>)| {
        let inside = inside.clone();
        async move {
            if key >= HOSTILE {
                return Ok(());
            }
            {
                let mut i = inside.lock().unwrap();
                let n = i.now.entry(key).or_default();
                *n += 1;
                let n = *n;
                let p = i.peak.entry(key).or_default();
                *p = (*p).max(n);
            }
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            *inside.lock().unwrap().now.get_mut(&key).unwrap() -= 1;
            Ok::<_, Infallible>(())
        }
    })
}

// === (1) keyed state under hostile keys ===

/// 16 real clients each hold `max_concurrent` (2) calls and have one more caller waiting;
/// 20,000 distinct hostile keys arrive at a 64-key bulkhead meanwhile, in bursts with time
/// passing. No client key is forgotten (its waiter is still not admitted, so it never runs
/// a third call), the key count never exceeds 64, the snapshot counts exactly the calls
/// running, and once the clients finish, everything is given back.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flood_of_hostile_keys_never_resets_a_busy_key() {
    const MAX_KEYS: usize = 64;
    const CLIENTS: u64 = 16;
    let layer = BulkheadLayer::builder()
        .max_concurrent(2)
        .when_full(WhenFull::wait(Duration::from_secs(3600)))
        .keyed(|r: &(u64, Option<oneshot::Receiver<()>>)| Some(r.0))
        .max_keys(MAX_KEYS)
        .build()
        .unwrap();
    let h = layer.handle();
    let inside = Arc::new(Mutex::new(Inside::default()));
    let svc = layer.layer(counted(inside.clone()));

    let mut gates = Vec::new();
    let mut calls = Vec::new();
    for c in 0..CLIENTS {
        for _ in 0..3 {
            let (tx, rx) = oneshot::channel();
            gates.push(tx);
            calls.push(tokio::spawn(svc.clone().oneshot((c, Some(rx)))));
        }
    }
    settle().await;
    let running = || (0..CLIENTS).map(|c| (h.in_flight(&c), h.queued(&c))).collect::<Vec<_>>();
    assert_eq!(running(), vec![(2, 1); CLIENTS as usize]);

    let mut admitted = 0;
    let mut refused = 0;
    for i in 0..20_000u64 {
        let key = HOSTILE + i;
        match svc.clone().oneshot((key, None)).await {
            Ok(()) => admitted += 1,
            Err(e) => {
                assert!(e.is::<KeySetFull>(), "{e}");
                refused += 1;
            }
        }
        assert!(h.keys() <= MAX_KEYS);
        if i % 1_000 == 999 {
            tokio::time::advance(ms(150)).await;
            settle().await;
            assert_eq!(running(), vec![(2, 1); CLIENTS as usize], "after {i} hostile keys");
            let total = h.snapshot().total;
            let truly_inside: usize = inside.lock().unwrap().now.values().sum();
            assert_eq!(total.in_flight, truly_inside, "the snapshot counts every call running");
            assert_eq!(truly_inside, 2 * CLIENTS as usize);
            assert_eq!(total.queued, CLIENTS as usize);
        }
    }
    // Hostile keys only ever used the 48 places the clients did not hold.
    assert!(admitted > 0);
    assert_eq!(admitted + refused, 20_000);
    assert_eq!(h.overflows(), refused);
    assert!(inside.lock().unwrap().peak.iter().all(|(_, &p)| p <= 2));

    drop(gates);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(h.snapshot().total.in_flight, 0);
    assert_eq!(h.snapshot().total.queued, 0);
    assert!(inside.lock().unwrap().peak.iter().all(|(_, &p)| p <= 2), "no key ever ran 3 calls");
    let held = h.keys();
    assert_eq!(h.sweep(), held, "every key is idle now");
    assert_eq!(h.keys(), 0);
}

/// 2,000,000 distinct hostile keys against a keyed bulkhead of the default 100,000 keys
/// while 1,000 real clients hold their permits and have a caller waiting: at most
/// `max_keys` keys are held, resident memory grows by a bounded amount, no client key is
/// forgotten and no client runs more than its limit. Run with `cargo test --release -p
/// palisade-bulkhead --test review_wave5 -- --ignored --nocapture`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
#[ignore = "slow: 2,000,000 keys; run in release"]
async fn two_million_hostile_keys() {
    const CLIENTS: u64 = 1_000;
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::wait(Duration::from_secs(3600)))
        .keyed(|r: &(u64, Option<oneshot::Receiver<()>>)| Some(r.0))
        .build()
        .unwrap();
    let h = layer.handle();
    let max_keys = h.max_keys();
    assert_eq!(max_keys, palisade_bulkhead::DEFAULT_MAX_KEYS);
    let inside = Arc::new(Mutex::new(Inside::default()));
    let svc = layer.layer(counted(inside.clone()));
    let rss_before = rss_kib();
    let mut gates = Vec::new();
    let mut calls = Vec::new();
    for c in 0..CLIENTS {
        for _ in 0..2 {
            let (tx, rx) = oneshot::channel();
            gates.push(tx);
            calls.push(tokio::spawn(svc.clone().oneshot((c, Some(rx)))));
        }
    }
    // Let every spawned call reach the bulkhead.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!((0..CLIENTS).all(|c| h.in_flight(&c) == 1 && h.queued(&c) == 1));
    let (mut admitted, mut max_len) = (0u64, 0);
    for i in 0..2_000_000u64 {
        admitted += u64::from(svc.clone().oneshot((HOSTILE + i, None)).await.is_ok());
        if i % 10_000 == 0 {
            max_len = max_len.max(h.keys());
        }
        if i % 200_000 == 199_999 {
            tokio::time::advance(ms(150)).await;
            settle().await;
            let bad: Vec<_> = (0..CLIENTS)
                .filter(|c| h.in_flight(c) != 1 || h.queued(c) != 1)
                .map(|c| (c, h.in_flight(&c), h.queued(&c)))
                .take(5)
                .collect();
            assert!(bad.is_empty(), "client keys reset after {i}: {bad:?} keys {}", h.keys());
        }
    }
    let rss_after = rss_kib();
    println!(
        "hostile admitted {admitted}, refused {}, evicted {}, max keys {max_len}, RSS {rss_before:?} KiB -> {rss_after:?} KiB",
        h.overflows(),
        h.evictions()
    );
    assert!(max_len <= max_keys);
    assert!(inside.lock().unwrap().peak.iter().all(|(_, &p)| p <= 1), "a client ran two calls at once");
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        // ~500 bytes per key held (the compartment, its semaphore, the map's slot).
        assert!(after.saturating_sub(before) < 96 * 1024, "RSS grew by {} KiB", after - before);
    }
    drop(gates);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(h.snapshot().total.in_flight, 0);
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// === (3) the adaptive limits against concurrency-limits ===

/// `(rtt in ms × 1000 = µs, in flight, dropped, the limit concurrency-limits reports)`.
type Step = (u64, usize, bool, usize);

fn replay(name: &str, mut alg: impl LimitAlgorithm, steps: &[Step]) {
    alg.validate().unwrap();
    for (i, &(rtt_us, in_flight, dropped, expected)) in steps.iter().enumerate() {
        let got = alg.update(&Sample::new(Duration::from_micros(rtt_us), in_flight, dropped));
        assert_eq!(got, expected, "{name}: step {i}");
    }
}

/// Corners the recorded trajectories do not reach, each limit computed by concurrency-limits
/// (commit 78a74b98, `Limit.onSample` fed these samples): Vegas across the step of its
/// integer log10 at 100 (alpha, beta and threshold all change with it), Vegas smoothing
/// growing by fractions of a call, Gradient2 with a one-sample long window and its 5 %
/// pull-down, Gradient2's plain-mean warm-up turning exponential at the 11th sample, and
/// AIMD falling to a minimum of 0 and climbing back.
#[test]
fn limits_match_concurrency_limits_at_the_corners() {
    let vegas = || Vegas::default().seed(1).probe_multiplier(100_000_000);
    replay(
        "vegas log10 step at 100",
        vegas().initial_limit(99).max_limit(1000),
        &[
            (10_000, 50, false, 99),
            (10_000, 50, false, 105),
            (10_000, 60, false, 117),
            (12_000, 60, false, 115),
            (30_000, 60, false, 113),
            (10_000, 60, true, 111),
        ],
    );
    replay(
        "vegas smoothing 0.25",
        vegas().initial_limit(10).max_limit(100).smoothing(0.25),
        &[
            (5_000, 5, false, 10),
            (5_000, 5, false, 11),
            (5_000, 6, false, 13),
            (5_000, 7, false, 14),
            (5_000, 8, false, 16),
            (9_000, 8, false, 15),
            (9_000, 8, true, 15),
            (5_000, 2, true, 15),
        ],
    );
    replay(
        "gradient2 long window 1",
        Gradient2::default().initial_limit(20).min_limit(5).max_limit(100).long_window(1).drops_as_samples(),
        &[
            (10_000, 20, false, 20),
            (10_000, 20, false, 21),
            (50_000, 20, false, 21),
            (1_000, 20, false, 21),
            (1_000, 20, false, 22),
            (1_000, 5, false, 22),
            (20_000, 20, false, 23),
        ],
    );
    replay(
        "gradient2 warm-up",
        Gradient2::default()
            .initial_limit(30)
            .min_limit(1)
            .max_limit(60)
            .smoothing(1.0)
            .rtt_tolerance(1.0)
            .queue_size(0)
            .drops_as_samples(),
        &[
            (10_000, 30, false, 30),
            (20_000, 30, false, 22),
            (30_000, 30, false, 15),
            (5_000, 30, false, 15),
            (15_000, 30, false, 15),
            (15_000, 30, false, 15),
            (15_000, 30, false, 15),
            (15_000, 30, false, 15),
            (15_000, 30, false, 15),
            (15_000, 30, false, 15),
            (45_000, 30, false, 7),
            (4_000, 30, false, 7),
        ],
    );
    replay(
        "aimd to 0 and back",
        Aimd::default().initial_limit(1).min_limit(0).max_limit(5).backoff_ratio(0.5),
        &[
            (1_000, 1, true, 0),
            (1_000, 0, false, 1),
            (1_000, 0, false, 1),
            (1_000, 1, false, 2),
            (1_000, 1, false, 3),
            (6_000_000, 1, false, 1),
        ],
    );
}

/// A configuration line of `tests/data/concurrency_limits_random.txt`, as the reference's
/// builder was given it.
fn configured(config: &str) -> Box<dyn LimitAlgorithm> {
    let mut words = config.split(' ');
    let kind = words.next().unwrap();
    let mut vegas = Vegas::default().seed(1);
    let mut gradient2 = Gradient2::default();
    let mut aimd = Aimd::default();
    for w in words {
        let (key, value) = w.split_once('=').unwrap_or((w, ""));
        let n = || value.parse::<usize>().unwrap();
        let f = || value.parse::<f64>().unwrap();
        match (kind, key) {
            ("vegas", "probe_multiplier") => vegas = vegas.probe_multiplier(n()),
            ("vegas", "initial") => vegas = vegas.initial_limit(n()),
            ("vegas", "max") => vegas = vegas.max_limit(n()),
            ("vegas", "smoothing") => vegas = vegas.smoothing(f()),
            ("vegas", "alpha") => vegas = vegas.alpha(n()),
            ("vegas", "beta") => vegas = vegas.beta(n()),
            ("vegas", "decrease") => vegas = vegas.decrease_fn(|l| l / 2.0),
            ("gradient2", "initial") => gradient2 = gradient2.initial_limit(n()),
            ("gradient2", "min") => gradient2 = gradient2.min_limit(n()),
            ("gradient2", "max") => gradient2 = gradient2.max_limit(n()),
            ("gradient2", "long_window") => gradient2 = gradient2.long_window(n()),
            ("gradient2", "rtt_tolerance") => gradient2 = gradient2.rtt_tolerance(f()),
            ("gradient2", "smoothing") => gradient2 = gradient2.smoothing(f()),
            ("gradient2", "queue_size") => gradient2 = gradient2.queue_size(n()),
            ("gradient2", "drops_as_samples") => gradient2 = gradient2.drops_as_samples(),
            ("aimd", "initial") => aimd = aimd.initial_limit(n()),
            ("aimd", "min") => aimd = aimd.min_limit(n()),
            ("aimd", "max") => aimd = aimd.max_limit(n()),
            ("aimd", "backoff") => aimd = aimd.backoff_ratio(f()),
            ("aimd", "timeout_ms") => aimd = aimd.timeout(ms(n() as u64)),
            other => panic!("unknown setting {other:?}"),
        }
    }
    let alg: Box<dyn LimitAlgorithm> = match kind {
        "vegas" => Box::new(vegas),
        "gradient2" => Box::new(gradient2),
        "aimd" => Box::new(aimd),
        other => panic!("unknown algorithm {other}"),
    };
    alg.validate().unwrap();
    alg
}

/// 80 random configurations — Vegas (smoothing, constant alpha and beta, a halving
/// decrease, limits from 1 to 10,000 around the log10 steps), Gradient2 (minimum 0 to the
/// initial limit, smoothing, tolerance, long window 1 to 600, queue size 0 to 10, drops as
/// samples) and AIMD (minimum 0, backoff, timeout) — each fed 40 to 120 random samples
/// (RTTs from 1 ns to 10 s around a base, in-flight counts at and around half the limit,
/// drops): every limit equals the one concurrency-limits (commit 78a74b98, `Limit.onSample`)
/// reported after the same sample, 6,600 samples in all. Vegas never probes here (its
/// jitter is the reference's `ThreadLocalRandom`).
#[test]
fn limits_match_concurrency_limits_on_random_configurations() {
    let text = include_str!("data/concurrency_limits_random.txt");
    let (mut name, mut alg, mut samples) = ("", None::<Box<dyn LimitAlgorithm>>, 0);
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("# ") {
            name = n;
        } else if let Some(config) = line.strip_prefix("config ") {
            alg = Some(configured(config));
        } else {
            let f: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            let sample = Sample::new(Duration::from_nanos(f[0]), f[1] as usize, f[2] == 1);
            let got = alg.as_mut().unwrap().update(&sample);
            assert_eq!(got as u64, f[3], "{name}: {line}");
            samples += 1;
        }
    }
    assert!(samples > 6_000);
}

// === BlockingLimiterTest, on the backlog ===

/// An adaptive limit over `Fixed(limit)` with a backlog: `(service, handle)`; a request
/// `Some(gate)` runs until the gate fires, `None` finishes at once.
fn backlog_limit(
    limit: usize,
    wait: Duration,
    max_queue: usize,
) -> (
    impl Service<Option<oneshot::Receiver<()>>, Response = (), Error = BoxError, Future: Send> + Clone,
    palisade_bulkhead::AdaptiveLimitHandle,
) {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Fixed::new(limit))
        .when_full(WhenFull::wait(wait))
        .max_queue(max_queue)
        .build()
        .unwrap();
    let h = layer.handle();
    let inner = tower::service_fn(|gate: Option<oneshot::Receiver<()>>| async move {
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Ok::<_, Infallible>(())
    });
    (layer.layer(inner), h)
}

/// `BlockingLimiterTest.test`: ten calls in flight, the limit set to 1, all ten finish —
/// the next call is admitted at once (the lowered limit's debt is paid, nothing is lost).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn blocking_limiter_set_limit_below_in_flight_then_release_all() {
    let (svc, h) = backlog_limit(10, Duration::from_secs(3600), 100);
    let mut gates = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..10 {
        let (tx, rx) = oneshot::channel();
        gates.push(tx);
        calls.push(tokio::spawn(svc.clone().oneshot(Some(rx))));
    }
    settle().await;
    assert_eq!(h.in_flight(), 10);
    h.set_limit(1).unwrap();
    for (tx, call) in gates.into_iter().zip(calls) {
        tx.send(()).unwrap();
        call.await.unwrap().unwrap();
    }
    assert_eq!(h.in_flight(), 0);
    let start = tokio::time::Instant::now();
    svc.clone().oneshot(None).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// `BlockingLimiterTest.testMultipleBlockedThreads`: eight callers of a limit of 1, each
/// holding it 10 ms, all get through (one after the other).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn blocking_limiter_multiple_blocked_callers() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Fixed::new(1))
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .build()
        .unwrap();
    let h = layer.handle();
    let inside = Arc::new(AtomicUsize::new(0));
    let i = inside.clone();
    let svc = layer.layer(tower::service_fn(move |()| {
        let i = i.clone();
        async move {
            assert_eq!(i.fetch_add(1, Ordering::SeqCst), 0, "two callers inside a limit of 1");
            tokio::time::sleep(ms(10)).await;
            i.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(())
        }
    }));
    let start = tokio::time::Instant::now();
    let calls: Vec<_> = (0..8).map(|_| tokio::spawn(svc.clone().oneshot(()))).collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(start.elapsed(), ms(80));
    assert_eq!((h.in_flight(), h.backlog()), (0, 0));
}

/// `BlockingLimiterTest.testTimeout` and `testNoTimeout`: with the limit taken, a caller
/// waits its whole wait (50 ms) and is refused; with a wait of an hour it is still waiting
/// after a second.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn blocking_limiter_timeout_and_no_timeout() {
    let (svc, _h) = backlog_limit(1, ms(50), 100);
    let (_gate, rx) = oneshot::channel();
    let _held = tokio::spawn(svc.clone().oneshot(Some(rx)));
    settle().await;
    let start = tokio::time::Instant::now();
    let err = svc.clone().oneshot(None).await.unwrap_err();
    assert!(support::is_overloaded(&err), "{err}");
    assert_eq!(start.elapsed(), ms(50));

    let (svc, h) = backlog_limit(1, Duration::from_secs(3600), 100);
    let (_gate, rx) = oneshot::channel();
    let _held = tokio::spawn(svc.clone().oneshot(Some(rx)));
    settle().await;
    let waiting = tokio::spawn(svc.clone().oneshot(None));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished());
    assert_eq!(h.backlog(), 1);
}

// === (5) limits changed at run time ===

/// A permit handed to a waiter that has not run yet is held: a shrink below it makes a
/// debt, and the waiter then cancelled must pay that debt — before, tokio's semaphore
/// took the cancelled waiter's permit back itself, past the debt, so the bulkhead admitted a
/// call with as many in flight as its new maximum (here: two calls under a maximum of 1).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cancelled_waiter_holding_a_handed_permit_pays_the_shrink() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(2)
        .when_full(WhenFull::wait(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let h = layer.handle();
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (now, most) = (inside.clone(), peak.clone());
    let svc = layer.layer(tower::service_fn(move |gate: oneshot::Receiver<()>| {
        let (now, most) = (now.clone(), most.clone());
        async move {
            most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            let _ = gate.await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(())
        }
    }));
    let (a_tx, a_rx) = oneshot::channel();
    let a = tokio::spawn(svc.clone().oneshot(a_rx));
    let (_b_tx, b_rx) = oneshot::channel();
    let _b = tokio::spawn(svc.clone().oneshot(b_rx));
    settle().await;
    assert_eq!(h.in_flight(), 2);

    // A third caller waits; A finishes and its permit is handed to the waiter, which has
    // not been polled since.
    let mut waiter = svc.clone();
    let mut ready = tokio_test::task::spawn(async move {
        std::future::poll_fn(|cx| waiter.poll_ready(cx)).await.unwrap();
        waiter
    });
    tokio_test::assert_pending!(ready.poll());
    assert_eq!(h.queued(), 1);
    a_tx.send(()).unwrap();
    a.await.unwrap().unwrap();
    assert_eq!(h.in_flight(), 2, "B runs and the waiter holds A's permit");

    // Shrink to 1 (B and the waiter's permit are owed), then the waiter gives up.
    h.set_max_concurrent(1).unwrap();
    drop(ready);
    assert_eq!(h.queued(), 0);
    assert_eq!(h.in_flight(), 1, "only B");
    assert_eq!(h.available(), 0, "the waiter's permit paid the shrink");

    // B still runs: with a maximum of 1, a new call waits.
    let (_c_tx, c_rx) = oneshot::channel();
    let c = tokio::spawn(svc.clone().oneshot(c_rx));
    settle().await;
    assert_eq!(h.queued(), 1);
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(inside.load(Ordering::SeqCst), 1, "two calls inside a maximum of 1");
    c.abort();
}

/// The same through a keyed bulkhead: a key's waiter handed a permit, the key's limit
/// lowered, the waiter's response future dropped (an outer timeout) — the key then admits
/// nothing while its one remaining call runs.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_keyed_waiter_holding_a_handed_permit_pays_the_shrink() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(2)
        .when_full(WhenFull::wait(Duration::from_secs(3600)))
        .keyed(|r: &(u64, Option<oneshot::Receiver<()>>)| Some(r.0))
        .build()
        .unwrap();
    let h = layer.handle();
    let inside = Arc::new(Mutex::new(Inside::default()));
    let svc = layer.layer(counted(inside.clone()));
    let (a_tx, a_rx) = oneshot::channel();
    let a = tokio::spawn(svc.clone().oneshot((7, Some(a_rx))));
    let (_b_tx, b_rx) = oneshot::channel();
    let _b = tokio::spawn(svc.clone().oneshot((7, Some(b_rx))));
    settle().await;
    let (_w_tx, w_rx) = oneshot::channel();
    let mut waiter = tokio_test::task::spawn(svc.clone().oneshot((7, Some(w_rx))));
    tokio_test::assert_pending!(waiter.poll());
    assert_eq!((h.in_flight(&7), h.queued(&7)), (2, 1));
    a_tx.send(()).unwrap();
    a.await.unwrap().unwrap();
    h.set_max_concurrent(1).unwrap();
    drop(waiter);
    assert_eq!((h.in_flight(&7), h.queued(&7)), (1, 0));
    let (_c_tx, c_rx) = oneshot::channel();
    let c = tokio::spawn(svc.clone().oneshot((7, Some(c_rx))));
    settle().await;
    assert_eq!(h.queued(&7), 1, "one call runs under a maximum of 1: the next waits");
    assert!(inside.lock().unwrap().peak[&7] <= 2);
    assert_eq!(inside.lock().unwrap().now[&7], 1);
    c.abort();
}

/// `LifoBlockingLimiterTest.fixedTimeoutExposedWhenConfigured` (a backlog of 10, 250 ms),
/// and the backlog changed at run time as the bulkhead's handle changes its wait: switched
/// on for a limit built to shed, shortened, its length lowered below the calls waiting
/// (they keep their place, newcomers are shed), and switched off (a caller already waiting
/// keeps its deadline).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_backlog_is_exposed_and_changes_at_run_time() {
    let h = AdaptiveLimitLayer::builder()
        .algorithm(Fixed::new(4))
        .when_full(WhenFull::wait(ms(250)))
        .max_queue(10)
        .build()
        .unwrap()
        .handle();
    assert_eq!((h.when_full(), h.max_queue()), (WhenFull::wait(ms(250)), 10));

    let layer = AdaptiveLimitLayer::builder().algorithm(Fixed::new(1)).build().unwrap();
    let h = layer.handle();
    assert_eq!((h.when_full(), h.max_queue()), (WhenFull::Refuse, 100));
    let svc = layer.layer(tower::service_fn(|gate: Option<oneshot::Receiver<()>>| async move {
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Ok::<_, Infallible>(())
    }));
    let (gate, rx) = oneshot::channel();
    let held = tokio::spawn(svc.clone().oneshot(Some(rx)));
    settle().await;
    let start = tokio::time::Instant::now();
    assert!(support::is_overloaded(&svc.clone().oneshot(None).await.unwrap_err()));
    assert_eq!(start.elapsed(), Duration::ZERO, "built to shed: no wait");

    h.set_when_full(WhenFull::wait(Duration::from_secs(10)));
    let first = tokio::spawn(svc.clone().oneshot(None));
    settle().await;
    assert_eq!(h.backlog(), 1);
    h.set_max_queue(1);
    assert!(support::is_overloaded(&svc.clone().oneshot(None).await.unwrap_err()), "the backlog is full");
    h.set_max_queue(0);
    assert_eq!(h.backlog(), 1, "a caller already waiting keeps its place");

    h.set_max_queue(5);
    h.set_when_full(WhenFull::wait(ms(50)));
    let start = tokio::time::Instant::now();
    assert!(support::is_overloaded(&svc.clone().oneshot(None).await.unwrap_err()));
    assert_eq!(start.elapsed(), ms(50), "the new wait");

    h.set_when_full(WhenFull::Refuse);
    let start = tokio::time::Instant::now();
    assert!(support::is_overloaded(&svc.clone().oneshot(None).await.unwrap_err()));
    assert_eq!(start.elapsed(), Duration::ZERO, "switched off: shed at once");
    assert_eq!(h.backlog(), 1, "the first caller still waits, with its 10 s");
    gate.send(()).unwrap();
    held.await.unwrap().unwrap();
    first.await.unwrap().unwrap();
    assert_eq!((h.in_flight(), h.backlog()), (0, 0));
}

/// The overflow policy, to the letter: a new key is refused while every held key is busy;
/// once they are idle, a scan (due after `len / 16` refused new keys or 100 ms, to keep a
/// flood's cost amortised O(1)) forgets them all and new keys are admitted again — never
/// by resetting a busy key.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_key_set_refuses_new_keys_until_a_scan_finds_idle_ones() {
    const MAX_KEYS: usize = 64;
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .keyed(|r: &(u64, Option<oneshot::Receiver<()>>)| Some(r.0))
        .max_keys(MAX_KEYS)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(counted(Arc::default()));
    let mut gates = Vec::new();
    let mut calls = Vec::new();
    for k in 0..MAX_KEYS as u64 {
        let (tx, rx) = oneshot::channel();
        gates.push(tx);
        calls.push(tokio::spawn(svc.clone().oneshot((k, Some(rx)))));
    }
    settle().await;
    assert_eq!(h.keys(), MAX_KEYS);
    let err = svc.clone().oneshot((1_000, None)).await.unwrap_err();
    let full = err.downcast_ref::<KeySetFull>().expect("KeySetFull");
    assert_eq!(full.capacity(), MAX_KEYS);
    // A held key is still served (refused by its own limit, not by the key set).
    let err = svc.clone().oneshot((0, None)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(palisade_bulkhead::BulkheadFullReason::NoPermit));

    drop(gates);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    // Every key is idle, but the last scan (just now) found them busy: the next scan is
    // due after 64 / 16 = 4 new keys or 100 ms.
    let mut refused = 0;
    while svc.clone().oneshot((2_000 + refused, None)).await.is_err() {
        refused += 1;
        assert!(refused < 4, "a scan was due");
    }
    assert_eq!(h.evictions(), MAX_KEYS as u64, "the scan forgot every idle key at once");
    assert_eq!(h.keys(), 1);
    assert_eq!(h.overflows(), 1 + refused);
}

/// One call of `when_the_limit_moves`: its outcome, or held until its gate fires.
enum Call {
    Succeed,
    Fail,
    Ignored,
    Held(oneshot::Receiver<()>),
    Admin,
}

/// When the limit moves, through the layer, as concurrency-limits' listeners feed
/// `onSample`: a success (`onSuccess`) and a drop (`onDropped`) are samples; an ignored
/// outcome (`onIgnore`), a call whose future was dropped (cancelled), a call shed at the
/// limit or refused at the end of its backlog wait (no listener: it never started) and a
/// bypassed call (the no-op listener) are not. AIMD makes each sample visible.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn when_the_limit_moves() {
    use palisade_core::classify::{classify_fn, Classification};

    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(2).min_limit(1).max_limit(100).backoff_ratio(0.5))
        .classifier(classify_fn(|r: &Result<u8, &'static str>| match r {
            Ok(0) => Classification::ignored(),
            Ok(_) => Classification::success(),
            Err(_) => Classification::failure(),
        }))
        .bypass(|c: &Call| matches!(c, Call::Admin))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(tower::service_fn(|c: Call| async move {
        match c {
            Call::Succeed | Call::Admin => Ok(1),
            Call::Fail => Err("dropped"),
            Call::Ignored => Ok(0),
            Call::Held(gate) => {
                let _ = gate.await;
                Ok(1)
            }
        }
    }));
    svc.clone().oneshot(Call::Succeed).await.unwrap();
    assert_eq!(h.limit(), 3, "success with 1 of 2 in flight: +1");
    svc.clone().oneshot(Call::Fail).await.unwrap_err();
    assert_eq!(h.limit(), 1, "drop: × 0.5");
    svc.clone().oneshot(Call::Ignored).await.unwrap();
    assert_eq!(h.limit(), 1, "ignored: no sample");

    let (gate, rx) = oneshot::channel();
    let held = tokio::spawn(svc.clone().oneshot(Call::Held(rx)));
    settle().await;
    assert!(support::is_overloaded(&svc.clone().oneshot(Call::Succeed).await.unwrap_err()));
    assert_eq!(svc.clone().oneshot(Call::Admin).await.unwrap(), 1);
    h.set_when_full(WhenFull::wait(ms(10)));
    assert!(support::is_overloaded(&svc.clone().oneshot(Call::Fail).await.unwrap_err()));
    assert_eq!(h.limit(), 1, "shed, bypassed and timed out in the backlog: no sample");
    let snapshot = h.snapshot();
    assert_eq!((snapshot.rejected, snapshot.bypassed, snapshot.dropped), (2, 1, 1));

    gate.send(()).unwrap();
    held.await.unwrap().unwrap();
    assert_eq!(h.limit(), 2, "success with 1 of 1 in flight: +1");

    let (_gate, rx) = oneshot::channel();
    let cancelled = tokio::spawn(svc.clone().oneshot(Call::Held(rx)));
    settle().await;
    assert_eq!(h.in_flight(), 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    cancelled.abort();
    settle().await;
    assert_eq!((h.limit(), h.in_flight()), (2, 0), "cancelled after a minute: no sample");
}

// === Resilience4j SemaphoreBulkheadTest: changeConfig ===

/// A bulkhead built with `max` permits and `wait`, a call holding a permit until its gate
/// fires, and `tryEnterBulkhead` (a ready service's reservation, given back at once).
struct R4j {
    h: palisade_bulkhead::BulkheadHandle,
    svc: palisade_bulkhead::Bulkhead<tower::util::ServiceFn<fn(oneshot::Receiver<()>) -> futures_gate::Gate>>,
}

mod futures_gate {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;

    pub(super) type Gate = Pin<Box<dyn Future<Output = Result<(), Infallible>> + Send>>;

    pub(super) fn gate(rx: tokio::sync::oneshot::Receiver<()>) -> Gate {
        Box::pin(async move {
            let _ = rx.await;
            Ok(())
        })
    }
}

impl R4j {
    fn new(max: usize, wait: Duration) -> Self {
        let layer =
            BulkheadLayer::builder().max_concurrent(max).when_full(WhenFull::wait(wait)).build().unwrap();
        let f: fn(oneshot::Receiver<()>) -> futures_gate::Gate = futures_gate::gate;
        Self { h: layer.handle(), svc: layer.layer(tower::service_fn(f)) }
    }

    fn hold(&self) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), BoxError>>) {
        let (tx, rx) = oneshot::channel();
        (tx, tokio::spawn(self.svc.clone().oneshot(rx)))
    }

    /// `tryEnterBulkhead` with the configured wait: `true` with a permit (given back).
    async fn try_enter(&self) -> bool {
        let mut svc = self.svc.clone();
        svc.ready().await.unwrap();
        let (tx, rx) = oneshot::channel();
        tx.send(()).unwrap();
        svc.call(rx).await.is_ok()
    }
}

/// `changePermissionsInIdleState` and `changeWaitTimeInIdleState`: 3 → 5 → 2 permits (the
/// pool follows), 5 s → 3 s → 7 s of wait.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn r4j_change_permissions_and_wait_in_idle_state() {
    let b = R4j::new(3, Duration::from_secs(5));
    assert_eq!(
        (b.h.max_concurrent(), b.h.available(), b.h.when_full()),
        (3, 3, WhenFull::wait(Duration::from_secs(5)))
    );
    b.h.set_max_concurrent(5).unwrap();
    assert_eq!((b.h.max_concurrent(), b.h.available()), (5, 5));
    b.h.set_max_concurrent(2).unwrap();
    b.h.set_max_concurrent(2).unwrap();
    assert_eq!((b.h.max_concurrent(), b.h.available()), (2, 2));
    for (wait, expected) in [(3, 3), (7, 7), (7, 7)] {
        b.h.set_when_full(WhenFull::wait(Duration::from_secs(wait)));
        assert_eq!(b.h.when_full(), WhenFull::wait(Duration::from_secs(expected)));
    }
    assert_eq!(b.h.max_concurrent(), 2);
}

/// `changePermissionsCountWhileOneThreadIsRunningWithThisPermission`: 1 permit, no wait;
/// raised to 2 while a call holds one (one more enters, a third does not), lowered to 1
/// while both run: the pool ends with 0 free until both finished, then 1. (Resilience4j's
/// `changeConfig` blocks the changing thread until a permit is free and only then shows
/// the new maximum; the handle records the change at once and the calls in flight pay it.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn r4j_change_permissions_while_one_call_runs_with_its_permit() {
    let b = R4j::new(1, Duration::ZERO);
    assert_eq!(b.h.available(), 1);
    let (a_tx, a) = b.hold();
    settle().await;
    assert_eq!(b.h.available(), 0);
    assert!(!b.try_enter().await);

    b.h.set_max_concurrent(2).unwrap();
    assert_eq!((b.h.max_concurrent(), b.h.when_full()), (2, WhenFull::Refuse));
    assert_eq!(b.h.available(), 1);
    let (b_tx, second) = b.hold();
    settle().await;
    assert_eq!(b.h.available(), 0);
    assert!(!b.try_enter().await);

    b.h.set_max_concurrent(1).unwrap();
    assert_eq!(b.h.max_concurrent(), 1);
    a_tx.send(()).unwrap();
    a.await.unwrap().unwrap();
    assert_eq!(b.h.available(), 0, "the first call to finish paid the shrink");
    assert!(!b.try_enter().await);
    b_tx.send(()).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!((b.h.available(), b.h.max_concurrent()), (1, 1));
}

/// `changePermissionsCountWhileOneThreadIsWaitingForPermission`: 1 permit held, a caller
/// waiting (500 s); raised to 2, the waiter enters at once; once it finished, 1 is free.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn r4j_change_permissions_while_one_caller_waits() {
    let b = R4j::new(1, ms(500_000));
    let (_held_tx, _held) = b.hold();
    settle().await;
    assert_eq!(b.h.available(), 0);
    let waiter = tokio::spawn({
        let svc = b.svc.clone();
        let (done, rx) = oneshot::channel();
        drop(done); // the call finishes as soon as it runs
        async move { svc.oneshot(rx).await }
    });
    settle().await;
    assert_eq!(b.h.queued(), 1);
    b.h.set_max_concurrent(2).unwrap();
    waiter.await.unwrap().unwrap();
    assert_eq!(tokio::time::Instant::now().elapsed(), Duration::ZERO);
    assert_eq!((b.h.max_concurrent(), b.h.available()), (2, 1));
}

/// `changeWaitingTimeWhileOneThreadIsWaitingForPermission`: 1 permit held, a caller
/// waiting (500 s); the wait set to 0: a new caller is refused at once, the waiting one
/// keeps waiting.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn r4j_change_wait_while_one_caller_waits() {
    let b = R4j::new(1, ms(500_000));
    let (_held_tx, _held) = b.hold();
    settle().await;
    let waiter = tokio::spawn({
        let svc = b.svc.clone();
        let (done, rx) = oneshot::channel();
        drop(done); // the call finishes as soon as it runs
        async move { svc.oneshot(rx).await }
    });
    settle().await;
    b.h.set_when_full(WhenFull::wait(Duration::ZERO));
    let start = tokio::time::Instant::now();
    assert!(!b.try_enter().await);
    assert_eq!(start.elapsed(), Duration::ZERO, "not blocked");
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(!waiter.is_finished(), "the waiting caller still waits");
    assert_eq!(b.h.queued(), 1);
}

/// `max_keys` is exact at the layer too (the map reported 1,504 for 1,500): 3,000
/// distinct busy keys fill exactly 1,500 places and the other 1,500 are refused.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_keys_is_exact_for_the_keyed_bulkhead() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .keyed(|r: &(u64, Option<oneshot::Receiver<()>>)| Some(r.0))
        .max_keys(1_500)
        .build()
        .unwrap();
    let h = layer.handle();
    assert_eq!(h.max_keys(), 1_500);
    let svc = layer.layer(counted(Arc::default()));
    let mut gates = Vec::new();
    let mut futures = Vec::new();
    let mut refused = 0;
    for k in 0..3_000u64 {
        let (tx, rx) = oneshot::channel();
        let mut fut = tokio_test::task::spawn(svc.clone().oneshot((k, Some(rx))));
        match fut.poll() {
            std::task::Poll::Pending => {
                gates.push(tx);
                futures.push(fut);
            }
            std::task::Poll::Ready(r) => {
                assert!(r.unwrap_err().is::<KeySetFull>());
                refused += 1;
            }
        }
    }
    assert_eq!((h.keys(), refused, h.overflows()), (1_500, 1_500, 1_500));
    assert_eq!(h.snapshot().total.in_flight, 1_500);
    assert_eq!(h.snapshot().max_keys, 1_500);
}
