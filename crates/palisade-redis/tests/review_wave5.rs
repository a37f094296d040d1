//! Review of the distributed bulkhead, the shared breaker and the backend's down policies
//! against a real `redis-server` started by each test.
//!
//! A stalled Redis is `CLIENT PAUSE … WRITE` (the socket stays open, a script or write
//! waits; `INFO` still answers, so a test knows when a command sits in Redis). Waits on real
//! time are bounded loops far longer than the configured timeouts; nothing asserts a duration.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::ignored_unit_patterns,
    clippy::many_single_char_names,
    missing_docs
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::event::Event;
use palisade_core::rejection::{find, BulkheadFull, CircuitOpen};
use palisade_redis::server::RedisServer;
use palisade_redis::{
    OnRedisDown, RedisBackend, RedisBulkheadLayer, RedisCircuitBreakerLayer, RedisCircuitState, RedisEvent,
};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

const MINUTE: Duration = Duration::from_secs(60);

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Stalls every write and script of `server` for up to `ms` (reads still answer).
async fn pause_writes(server: &RedisServer, ms: u64) {
    let mut c = raw(server).await;
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("WRITE").query_async(&mut c).await.unwrap();
}

async fn unpause(server: &RedisServer) {
    let mut c = raw(server).await;
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query_async(&mut c).await.unwrap();
}

/// Waits until at least one client's command sits paused in Redis.
async fn until_a_command_waits_in_redis(server: &RedisServer) {
    let mut c = raw(server).await;
    for _ in 0..1000 {
        let info: String = redis::cmd("INFO").arg("clients").query_async(&mut c).await.unwrap();
        let blocked = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if blocked > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no command reached the paused Redis");
}

/// The number of lease entries of bulkhead `name` (expired or not), read straight from Redis.
async fn lease_entries(server: &RedisServer, name: &str) -> u64 {
    let mut c = raw(server).await;
    redis::cmd("ZCARD").arg(format!("palisade:bulkhead:{name}:leases")).query_async(&mut c).await.unwrap()
}

/// The unexpired lease entries of bulkhead `name`, read straight from Redis by its clock.
async fn live_leases(server: &RedisServer, name: &str) -> u64 {
    let mut c = raw(server).await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let now = secs * 1000 + micros / 1000;
    redis::cmd("ZCOUNT")
        .arg(format!("palisade:bulkhead:{name}:leases"))
        .arg(format!("({now}"))
        .arg("+inf")
        .query_async(&mut c)
        .await
        .unwrap()
}

/// Polls `cond` every 10 ms for up to ~10 s; whether it became true.
async fn eventually<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1000 {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn backend(server: &RedisServer, timeout: Duration) -> RedisBackend {
    // a guard that never opens by accident: these tests count on each call reaching Redis
    RedisBackend::builder(server.url()).timeout(timeout).guard(1000, MINUTE).build().unwrap()
}

fn events(b: &RedisBackend) -> Arc<Mutex<Vec<RedisEvent>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    b.on_event(move |e| s.lock().unwrap().push(e.clone()));
    seen
}

type Call = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A call through `layer` to a service that never answers.
fn hanging_call(layer: &RedisBulkheadLayer) -> Call {
    let svc = layer.layer(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
    Box::pin(svc.oneshot(()))
}

fn quick_call(layer: &RedisBulkheadLayer) -> Call {
    let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    Box::pin(svc.oneshot(()))
}

/// Drives `call` until the bulkhead holds its permit (the inner call then hangs).
async fn until_held(layer: &RedisBulkheadLayer, call: &mut Call, n: u64) {
    for _ in 0..1000 {
        if let Ok(out) = tokio::time::timeout(Duration::from_millis(2), &mut *call).await {
            panic!("the call ended: {out:?}");
        }
        if layer.in_flight().await == Some(n) {
            return;
        }
    }
    panic!("the permit was never taken");
}

// === the bulkhead's lease lifecycle ===

/// A response future dropped while its lease request sits in Redis: the lease Redis grants
/// afterwards belongs to no one and must be given back at once, not after the 60 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_before_the_lease_reply_leaves_no_lease() {
    let server = RedisServer::start();
    let layer = RedisBulkheadLayer::builder("early", backend(&server, Duration::from_secs(30)), 1)
        .lease(MINUTE)
        .build()
        .unwrap();
    quick_call(&layer).await.unwrap(); // the script is loaded: the next request is one EVALSHA
    pause_writes(&server, 20_000).await;
    let mut call = hanging_call(&layer);
    assert!(tokio::time::timeout(Duration::from_millis(1), &mut call).await.is_err());
    until_a_command_waits_in_redis(&server).await;
    drop(call);
    unpause(&server).await;
    assert!(
        eventually(|| async { lease_entries(&server, "early").await == 0 }).await,
        "a lease granted to a dropped call stays for the whole 60 s lease"
    );
    // and the permit is usable by the next caller
    quick_call(&layer).await.unwrap();
}

/// An acquisition that timed out on the client may still be executed by a slow Redis: the
/// call was decided by the down policy, so that lease belongs to no one and must go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_granted_after_its_request_timed_out_is_given_back() {
    let server = RedisServer::start();
    let b = backend(&server, Duration::from_millis(200));
    let seen = events(&b);
    let layer = RedisBulkheadLayer::builder("slow", b, 1).lease(MINUTE).build().unwrap();
    quick_call(&layer).await.unwrap(); // the script is loaded: the next request is one EVALSHA
    pause_writes(&server, 20_000).await;
    let err = quick_call(&layer).await.unwrap_err();
    assert!(find::<BulkheadFull>(&*err).is_some(), "fail closed: {err}");
    assert!(seen.lock().unwrap().iter().any(|e| matches!(e, RedisEvent::Fallback { op: "lease", .. })));
    unpause(&server).await;
    assert!(
        eventually(|| async { lease_entries(&server, "slow").await == 0 }).await,
        "the timed-out request's lease stays for the whole 60 s lease"
    );
}

/// A lease lost while the call runs (Redis flushed or restarted empty, or renewals that could
/// not reach Redis for a whole lease) is taken again by the next renewal when there is room,
/// so the running call counts again and the fleet does not admit one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_while_the_call_runs_is_taken_again() {
    let server = RedisServer::start();
    let b = backend(&server, Duration::from_secs(5));
    let seen = events(&b);
    let layer =
        RedisBulkheadLayer::builder("lost", b.clone(), 1).lease(Duration::from_millis(300)).build().unwrap();
    let mut call = hanging_call(&layer);
    until_held(&layer, &mut call, 1).await;
    let mut c = raw(&server).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    // keep the call running (it is a spawned-free future: nothing else polls it)
    let running = tokio::spawn(call);
    assert!(
        eventually(|| async { layer.in_flight().await == Some(1) }).await,
        "the running call's lease was never taken again"
    );
    // the renewal's task publishes after Redis answered it: it may run after the read above
    assert!(
        eventually(|| async { seen.lock().unwrap().iter().any(|e| e.kind() == "lease_lost") }).await,
        "no event for the lost lease"
    );
    assert!(b.snapshot().lost_leases >= 1, "no metric for the lost lease");
    // another instance finds the fleet full
    let other =
        RedisBulkheadLayer::builder("lost", backend(&server, Duration::from_secs(5)), 1).build().unwrap();
    let err = quick_call(&other).await.unwrap_err();
    assert!(find::<BulkheadFull>(&*err).is_some(), "{err}");
    running.abort();
    assert!(eventually(|| async { layer.in_flight().await == Some(0) }).await);
}

/// Two instances of one bulkhead with different leases (a rolling deploy): the shorter lease's
/// key expiry must not drop the longer leases still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_lease_elsewhere_does_not_expire_the_fleets_leases() {
    let server = RedisServer::start();
    let long = RedisBulkheadLayer::builder("mixed", backend(&server, Duration::from_secs(5)), 2)
        .lease(MINUTE)
        .build()
        .unwrap();
    let short = RedisBulkheadLayer::builder("mixed", backend(&server, Duration::from_secs(5)), 2)
        .lease(Duration::from_millis(30))
        .build()
        .unwrap();
    let mut held = hanging_call(&long);
    until_held(&long, &mut held, 1).await;
    quick_call(&short).await.unwrap();
    // the short instance's key expiry (2 × 30 ms) has long passed
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(long.in_flight().await, Some(1), "the 60 s lease of a running call vanished");
    drop(held);
}

/// A key of the wrong type written by someone else: the decision goes to the policy (with
/// events), and the guard breaker around the connection does not open for every other user of
/// the backend: Redis answered, the connection is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_type_key_falls_back_without_opening_the_guard_for_everyone() {
    let server = RedisServer::start();
    let b =
        RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).guard(3, MINUTE).build().unwrap();
    let seen = events(&b);
    let mut c = raw(&server).await;
    let _: () = redis::cmd("SET")
        .arg("palisade:bulkhead:poisoned:leases")
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    let poisoned = RedisBulkheadLayer::builder("poisoned", b.clone(), 2)
        .on_redis_down(OnRedisDown::FailOpen)
        .build()
        .unwrap();
    for _ in 0..10 {
        quick_call(&poisoned).await.unwrap();
    }
    {
        let seen = seen.lock().unwrap();
        assert!(seen.iter().any(|e| matches!(e, RedisEvent::Fallback { policy: "fail_open", .. })));
        assert!(seen.iter().any(
            |e| matches!(e, RedisEvent::CallFailed { error, .. } if error.to_string().contains("WRONGTYPE"))
        ));
    }
    assert!(b.snapshot().fallbacks >= 10);
    // the breaker's buckets (1 s each) for the next minute poisoned the same way
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    for idx in secs..secs + 60 {
        let key = format!("palisade:breaker:{{poisoned}}:b:{idx}");
        let _: () = redis::cmd("SET").arg(key).arg("x").query_async(&mut c).await.unwrap();
    }
    let breaker = RedisCircuitBreakerLayer::builder("poisoned", b.clone())
        .time_window(Duration::from_secs(10), 10)
        .failure_rate(0.5, 1)
        .build()
        .unwrap();
    let failed = b.snapshot().failures;
    for _ in 0..3 {
        assert_eq!(breaker.record(true).await, RedisCircuitState::Closed);
    }
    assert!(b.snapshot().failures >= failed + 3, "the poisoned records did not fail");
    // another bulkhead on the same backend still reaches Redis
    let healthy = RedisBulkheadLayer::builder("healthy", b.clone(), 1).build().unwrap();
    let mut call = hanging_call(&healthy);
    until_held(&healthy, &mut call, 1).await;
    assert_eq!(lease_entries(&server, "healthy").await, 1, "the guard breaker opened: decided without Redis");
}

// === configs ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_breaker_and_bulkhead_configs_are_config_errors() {
    let server = RedisServer::start();
    let b = backend(&server, Duration::from_secs(5));
    let br = || RedisCircuitBreakerLayer::builder("cfg", b.clone());
    // a failure rate of 0 opened the breaker on successes alone (0 failures >= 0 × total)
    let err = br().failure_rate(0.0, 2).build().unwrap_err();
    assert!(err.to_string().contains("failure_rate"), "{err}");
    // a poll interval past tokio's clock panicked the poller at its second tick
    let err = br().poll_interval(Duration::MAX).build().unwrap_err();
    assert!(err.to_string().contains("poll_interval"), "{err}");
    assert!(br().time_window(Duration::MAX, 10).build().is_err());
    assert!(br().time_window(Duration::from_secs(10), 100_000).build().is_err());
    assert!(br().time_window(Duration::from_secs(10), 0).build().is_err());
    assert!(br().wait_in_open(Duration::MAX).build().is_err());
    assert!(br().failure_rate(f64::NAN, 2).build().is_err());
    assert!(br().failure_rate(0.5, 0).build().is_err());
    let bh = || RedisBulkheadLayer::builder("cfg", b.clone(), 3);
    assert!(bh().lease(Duration::MAX).build().is_err());
    assert!(bh().lease(Duration::ZERO).build().is_err());
    assert!(bh().on_redis_down(OnRedisDown::Local { share: f64::INFINITY }).build().is_err());
    assert!(RedisBulkheadLayer::builder("cfg", b.clone(), u32::MAX).build().is_err());
    // a failure rate of 1: every call must fail (Resilience4j's threshold 100)
    let all = br().failure_rate(1.0, 2).build().unwrap();
    assert_eq!(all.record(true).await, RedisCircuitState::Closed);
    assert_eq!(all.record(false).await, RedisCircuitState::Closed);
    assert_eq!(all.record(true).await, RedisCircuitState::Closed);
}

/// Huge backend durations saturate: a call still answers and the guard still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_backend_durations_saturate() {
    let server = RedisServer::start();
    let b =
        RedisBackend::builder(server.url()).timeout(Duration::MAX).guard(1, Duration::MAX).build().unwrap();
    let layer = RedisBulkheadLayer::new("huge", b, 1);
    quick_call(&layer).await.unwrap();
    assert_eq!(layer.in_flight().await, Some(0));
}

// === never a hang ===

/// A "Redis" that accepts connections and never answers: every path ends within its timeout
/// (connect and handshake included) and the policy decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_never_hangs_a_decision() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // read nothing, answer nothing
        }
    });
    let b = RedisBackend::builder(url).timeout(Duration::from_millis(100)).guard(2, MINUTE).build().unwrap();
    let seen = events(&b);
    let closed = RedisBulkheadLayer::builder("silent", b.clone(), 1).build().unwrap();
    let local = RedisBulkheadLayer::builder("silent", b.clone(), 4)
        .on_redis_down(OnRedisDown::Local { share: 0.5 })
        .build()
        .unwrap();
    let breaker = RedisCircuitBreakerLayer::builder("silent", b.clone())
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let bound = Duration::from_secs(20);
    for _ in 0..4 {
        let err = tokio::time::timeout(bound, quick_call(&closed)).await.expect("hung").unwrap_err();
        assert!(find::<BulkheadFull>(&*err).is_some(), "{err}");
    }
    // local share 0.5 of 4: two calls at once, the third refused
    let mut one = hanging_call(&local);
    let mut two = hanging_call(&local);
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut one).await.is_err());
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut two).await.is_err());
    let err = tokio::time::timeout(bound, quick_call(&local)).await.expect("hung").unwrap_err();
    assert!(find::<BulkheadFull>(&*err).is_some(), "{err}");
    drop((one, two));
    quick_call(&local).await.unwrap();
    assert_eq!(
        tokio::time::timeout(bound, breaker.record(true)).await.expect("hung"),
        RedisCircuitState::Closed
    );
    assert_eq!(tokio::time::timeout(bound, closed.in_flight()).await.expect("hung"), None);
    let mut svc = breaker.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    tokio::time::timeout(bound, svc.ready().await.unwrap().call(())).await.expect("hung").unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|e| matches!(e, RedisEvent::Fallback { policy: "local", .. })));
    assert!(seen.iter().any(|e| matches!(e, RedisEvent::Fallback { policy: "fail_closed", .. })));
    drop(seen);
    accepted.abort();
}

/// The shared breaker: an open state written by one instance reaches another through its
/// poller, and a closed breaker elsewhere is not reopened by a stale poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_fleet_refuses_on_every_instance_until_the_wait_expires() {
    let server = RedisServer::start();
    let mk = || {
        RedisCircuitBreakerLayer::builder("fleet", backend(&server, Duration::from_secs(5)))
            .failure_rate(0.5, 2)
            .wait_in_open(Duration::from_secs(3))
            .poll_interval(Duration::from_millis(10))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    a.record(true).await;
    assert_eq!(a.record(true).await, RedisCircuitState::Open);
    assert!(eventually(|| async { b.state() == RedisCircuitState::Open }).await);
    let mut svc = b.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err}");
    // the open key expires: every instance closes, the window starts empty
    assert!(
        eventually(|| async {
            a.state() == RedisCircuitState::Closed && b.state() == RedisCircuitState::Closed
        })
        .await
    );
    assert_eq!(b.record(true).await, RedisCircuitState::Closed, "one failure in an empty window");
    let mut c = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("palisade:breaker:*").query_async(&mut c).await.unwrap();
    for k in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut c).await.unwrap();
        assert!(ttl > 0, "{k} has no expiry");
    }
}

/// A failure rate below 10^-6 was sent to the script as "0.000000": the fleet opened on
/// successes alone, like a rate of 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_failure_rate_is_sent_exactly() {
    let server = RedisServer::start();
    let b = RedisCircuitBreakerLayer::builder("tiny", backend(&server, Duration::from_secs(5)))
        .failure_rate(1e-9, 2)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(b.record(false).await, RedisCircuitState::Closed, "opened on successes");
    }
    assert_eq!(b.record(true).await, RedisCircuitState::Open, "one failure in four is above 1e-9");
}

/// Redis killed and restarted empty on its port while a call holds a permit and a shared
/// breaker counts outcomes: nothing hangs while it is down, the running call's lease is taken again after
/// the restart, new calls reach Redis again, and the breaker counts outcomes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_the_bulkhead_and_breaker_recover() {
    let mut server = RedisServer::start();
    let port = server.port();
    let b = RedisBackend::builder(server.url())
        // Generous: the first calls after the restart wait for the reconnection.
        .timeout(Duration::from_secs(2))
        .guard(3, Duration::from_millis(100))
        .build()
        .unwrap();
    let seen = events(&b);
    let layer = RedisBulkheadLayer::builder("restart", b.clone(), 1)
        .lease(Duration::from_millis(600))
        .build()
        .unwrap();
    let breaker = RedisCircuitBreakerLayer::builder("restart", b.clone())
        .failure_rate(0.5, 2)
        .wait_in_open(MINUTE)
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut call = hanging_call(&layer);
    until_held(&layer, &mut call, 1).await;
    let running = tokio::spawn(call);
    server.stop();
    let bound = Duration::from_secs(20);
    // down: refused (fail closed), the breaker keeps its state, nothing hangs
    let err = tokio::time::timeout(bound, quick_call(&layer)).await.expect("hung").unwrap_err();
    assert!(find::<BulkheadFull>(&*err).is_some(), "{err}");
    let fallbacks = b.snapshot().fallbacks;
    assert_eq!(
        tokio::time::timeout(bound, breaker.record(true)).await.expect("hung"),
        RedisCircuitState::Closed
    );
    // the outcome the fleet could not count is a fallback: an event and the counter
    assert_eq!(b.snapshot().fallbacks, fallbacks + 1);
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, RedisEvent::Fallback { op: "breaker", policy: "fail_open" })));
    let _server = loop {
        match RedisServer::start_on(port) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // the running call's renewal takes its lease again in the empty Redis
    assert!(eventually(|| async { layer.in_flight().await == Some(1) }).await, "lease never taken again");
    // the renewal's task publishes after Redis answered it: it may run after the read above
    assert!(
        eventually(|| async {
            seen.lock().unwrap().iter().any(|e| matches!(e, RedisEvent::LeaseLost { taken_again: true, .. }))
        })
        .await,
        "no event for the lease taken again"
    );
    let err = quick_call(&layer).await.unwrap_err();
    assert!(find::<BulkheadFull>(&*err).is_some(), "the fleet is full again: {err}");
    running.abort();
    assert!(eventually(|| async { quick_call(&layer).await.is_ok() }).await, "no recovery");
    // the breaker counts outcomes in the new Redis
    assert!(
        eventually(|| async { breaker.record(true).await == RedisCircuitState::Open }).await,
        "the breaker never counted again"
    );
}

/// The guard breaker opened by other calls (a burst of timeouts) must not starve the
/// renewals of running calls: their leases lapsed while Redis was answering again, and the
/// fleet admitted more than N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_go_around_a_guard_opened_by_other_calls() {
    let server = RedisServer::start();
    let b = RedisBackend::builder(server.url())
        .timeout(Duration::from_millis(100))
        .guard(1, MINUTE)
        .build()
        .unwrap();
    let layer = RedisBulkheadLayer::builder("starved", b.clone(), 1)
        .lease(Duration::from_millis(1500))
        .build()
        .unwrap();
    let other = RedisBulkheadLayer::builder("tripper", b.clone(), 1).build().unwrap();
    let mut call = hanging_call(&layer);
    until_held(&layer, &mut call, 1).await;
    let running = tokio::spawn(call);
    // its script is loaded: the next request is one EVALSHA
    quick_call(&other).await.unwrap();
    // one timed-out call opens the guard for a minute
    pause_writes(&server, 300).await;
    assert!(quick_call(&other).await.is_err());
    unpause(&server).await;
    assert!(quick_call(&other).await.is_err(), "the guard is open");
    // two whole leases later the running call still holds its permit in Redis
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(live_leases(&server, "starved").await, 1, "the running call's lease lapsed");
    running.abort();
}

/// Building the shared breaker outside a runtime (the backend was built inside one, then
/// moved to a plain thread) is a ConfigError like the backend's own, not a panic in
/// `tokio::spawn`.
#[test]
fn a_breaker_built_outside_a_runtime_is_a_config_error() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let b = rt.block_on(async { backend(&server, Duration::from_secs(5)) });
    let built = std::thread::spawn(move || RedisCircuitBreakerLayer::builder("no-rt", b).build().map(|_| ()))
        .join()
        .expect("building panicked");
    let err = built.unwrap_err();
    assert!(err.to_string().contains("runtime"), "{err}");
}

/// Calls that outlive their lease (2.3 leases each) on two instances: renewals keep every
/// lease, so the fleet never has more than N in flight, every call is eventually admitted, and
/// every permit comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_longer_than_the_lease_never_exceed_n_across_instances() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = RedisServer::start();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let inner = {
        let (in_flight, max) = (in_flight.clone(), max.clone());
        service_fn(move |_: ()| {
            let (in_flight, max) = (in_flight.clone(), max.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3500)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            }
        })
    };
    let mk = || {
        RedisBulkheadLayer::builder("long", backend(&server, Duration::from_secs(5)), 3)
            .lease(Duration::from_millis(1500))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..6 {
        let svc = if i % 2 == 0 { a.layer(inner.clone()) } else { b.layer(inner.clone()) };
        set.spawn(async move {
            loop {
                match svc.clone().oneshot(()).await {
                    Ok(()) => return,
                    Err(e) => assert!(find::<BulkheadFull>(&*e).is_some(), "{e}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert!(max.load(Ordering::SeqCst) <= 3, "max in flight {}", max.load(Ordering::SeqCst));
    assert!(eventually(|| async { a.in_flight().await == Some(0) }).await);
}

/// The inner call failing or panicking gives the permit back at once (not after the lease).
#[allow(clippy::manual_assert)] // the inner service panics on purpose
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_error_or_panic_gives_the_permit_back() {
    let server = RedisServer::start();
    let layer = RedisBulkheadLayer::builder("err", backend(&server, Duration::from_secs(5)), 1)
        .lease(MINUTE)
        .build()
        .unwrap();
    let failing = layer.layer(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("boom")) }));
    let err = failing.oneshot(()).await.unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert!(eventually(|| async { layer.in_flight().await == Some(0) }).await, "kept after an error");
    quick_call(&layer).await.unwrap();
    let panicking = layer.layer(service_fn(|_: ()| async {
        if true {
            panic!("inner panicked");
        }
        Ok::<(), std::io::Error>(())
    }));
    let joined = tokio::spawn(panicking.oneshot(())).await;
    assert!(joined.unwrap_err().is_panic());
    assert!(eventually(|| async { layer.in_flight().await == Some(0) }).await, "kept after a panic");
    quick_call(&layer).await.unwrap();
}

/// One caller's calls one after another on a one-permit fleet: each call's release reaches
/// Redis before the next call's acquisition (they share the connection, in order), so none is
/// refused. The release was a spawned task: on a current-thread runtime it ran only after the
/// next acquisition had been sent, and every second call was refused by its own caller's
/// finished call.
#[tokio::test(flavor = "current_thread")]
async fn a_callers_next_call_finds_the_permit_its_last_call_gave_back() {
    let server = RedisServer::start();
    let layer = RedisBulkheadLayer::builder("seq", backend(&server, Duration::from_secs(5)), 1)
        .lease(MINUTE)
        .build()
        .unwrap();
    for i in 0..50 {
        if let Err(e) = quick_call(&layer).await {
            panic!("call {i} refused: {e}");
        }
    }
    let failing = layer.layer(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("boom")) }));
    for _ in 0..10 {
        let err = failing.clone().oneshot(()).await.unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
    // a call dropped while its inner call runs gives its permit back before the next call
    for _ in 0..10 {
        let mut call = hanging_call(&layer);
        until_held(&layer, &mut call, 1).await;
        drop(call);
        quick_call(&layer).await.unwrap();
    }
}

/// Hostile churn on two instances with Redis stalling 15 ms in every 45: 300 calls, each
/// completed, failed, or dropped at a random point (while its lease request sits in Redis,
/// during the call). Never more than N in flight,
/// and afterwards not one lease is left in Redis (with 60 s leases, a leaked one would stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_drops_on_two_instances_leak_no_lease_and_never_exceed_n() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let server = RedisServer::start();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let rng = Arc::new(palisade_core::rng::AtomicRng::seeded(16));
    let inner = {
        let (in_flight, max, rng) = (in_flight.clone(), max.clone(), rng.clone());
        service_fn(move |fail: bool| {
            let (in_flight, max) = (in_flight.clone(), max.clone());
            let work = Duration::from_micros(rng.next_u64() % 5_000);
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                let _running = Running(in_flight);
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(work).await;
                if fail {
                    Err(std::io::Error::other("failed"))
                } else {
                    Ok(())
                }
            }
        })
    };
    let mk = || {
        RedisBulkheadLayer::builder("churn", backend(&server, Duration::from_secs(5)), 4)
            .lease(MINUTE)
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    // a Redis that stalls now and then: lease requests sit in it while callers give up
    let stalls = {
        let mut c = raw(&server).await;
        tokio::spawn(async move {
            loop {
                let _: Result<(), _> =
                    redis::cmd("CLIENT").arg("PAUSE").arg(15).arg("WRITE").query_async(&mut c).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..300 {
        let svc = if i % 2 == 0 { a.layer(inner.clone()) } else { b.layer(inner.clone()) };
        let r = rng.next_u64();
        set.spawn(async move {
            let call = svc.oneshot(r.is_multiple_of(7));
            match r % 3 {
                0 => drop(call.await),
                // dropped after a random while: before the reply, during the call, or never
                _ => drop(tokio::time::timeout(Duration::from_micros(r % 20_000), call).await),
            }
        });
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    stalls.abort();
    assert!(max.load(Ordering::SeqCst) <= 4, "max in flight {}", max.load(Ordering::SeqCst));
    assert!(
        eventually(|| async { lease_entries(&server, "churn").await == 0 }).await,
        "{} leases left in Redis",
        lease_entries(&server, "churn").await
    );
}

/// The shared breaker's policy while Redis is down, chosen by the user: fail open (the
/// default: calls go through, nothing can open it), fail closed (every call refused until a
/// poll reaches Redis again), local (this instance's own outcomes open it alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_breaker_follows_its_policy_while_redis_is_down() {
    let mut server = RedisServer::start();
    let port = server.port();
    let b = RedisBackend::builder(server.url())
        .timeout(Duration::from_secs(2))
        .guard(1000, MINUTE)
        .build()
        .unwrap();
    let seen = events(&b);
    let mk = |name: &str, policy| {
        RedisCircuitBreakerLayer::builder(name.to_owned(), b.clone())
            .failure_rate(0.5, 4)
            .wait_in_open(MINUTE)
            .poll_interval(Duration::from_millis(20))
            .on_redis_down(policy)
            .build()
            .unwrap()
    };
    let open = mk("open", OnRedisDown::FailOpen);
    let closed = mk("closed", OnRedisDown::FailClosed);
    let local = mk("local", OnRedisDown::Local { share: 0.5 });
    let ok =
        |l: &RedisCircuitBreakerLayer| l.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let failing = |l: &RedisCircuitBreakerLayer| {
        l.layer(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) }))
    };
    // awaited (a service call's outcome is recorded by a spawned task, which could land in
    // the local window after the stop)
    for l in [&open, &closed, &local] {
        assert_eq!(l.record(false).await, RedisCircuitState::Closed);
    }
    server.stop();
    // fail open: failures are not counted anywhere, calls keep going through
    for _ in 0..6 {
        let err = failing(&open).oneshot(()).await.unwrap_err();
        assert!(find::<CircuitOpen>(&*err).is_none(), "{err}");
        assert_eq!(open.record(true).await, RedisCircuitState::Closed);
    }
    ok(&open).oneshot(()).await.unwrap();
    // fail closed: once the poller (or a record) found Redis gone, every call is refused
    assert!(
        eventually(|| async { ok(&closed).oneshot(()).await.is_err() }).await,
        "fail closed never refused"
    );
    let err = ok(&closed).oneshot(()).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err}");
    // local: ceil(0.5 × 4) = 2 failures of this instance open it
    assert_eq!(local.record(true).await, RedisCircuitState::Closed, "one local failure");
    assert_eq!(local.record(true).await, RedisCircuitState::Open, "two local failures");
    let err = ok(&local).oneshot(()).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err}");
    {
        let seen = seen.lock().unwrap();
        for policy in ["fail_open", "fail_closed", "local"] {
            assert!(
                seen.iter()
                    .any(|e| matches!(e, RedisEvent::Fallback { op: "breaker", policy: p } if *p == policy)),
                "no {policy} fallback event"
            );
        }
    }
    // Redis back: fail closed lets calls through again
    let _server = loop {
        match RedisServer::start_on(port) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(eventually(|| async { ok(&closed).oneshot(()).await.is_ok() }).await, "no recovery");
}
