//! `storm --redis`: two front instances share their per-client rate limit and their backend
//! breaker through one Redis (the `redis` feature, `palisade::redis`).
//!
//! ```sh
//! cargo run --release --example storm --features full -- --redis
//! ```
//!
//! It starts a throwaway `redis-server` on a free loopback port (Debian package
//! `redis-server`), the chaos backend, and two axum fronts A and B in this process, each with
//! its own Redis connection and its own palisade stack: a per-client
//! [`RedisRateLimiter`] (through `AsyncRateLimitLayer`) on the route and a
//! [`RedisCircuitBreakerLayer`] around the backend client. Every client sends to both fronts
//! alternately. The backend is healthy, then down, then healthy again. The summary shows, per
//! client, what each front admitted and that the fleet together stayed within one quota
//! (two local limiters would have admitted twice as much), and that the shared breaker opened
//! on both fronts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::rate_limit::async_store::AsyncRateLimitLayer;
use palisade::redis::server::{RedisServer, INSTALL_HINT};
use palisade::redis::{
    OnRedisDown, Quota, RedisBackend, RedisCircuitBreakerLayer, RedisCircuitState, RedisRateLimiter,
};
use palisade::rejection::{find, CircuitOpen};
use palisade::respond::HttpRejectionLayer;
use palisade::BoxError;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};

use super::{apply_phase, client_id, start_backend, Phase};

/// The fleet's per-client quota: `LIMIT` per second, a burst of `LIMIT`.
const LIMIT: u64 = 20;
const CLIENTS: usize = 4;
/// Each client's rate, split evenly across the two fronts: three times its quota.
const CLIENT_RATE: f64 = 60.0;
const RUN: Duration = Duration::from_secs(12);

/// The backend's script for this run, as fractions of it.
const REDIS_PHASES: [Phase; 3] = [
    Phase {
        name: "healthy",
        until: 0.35,
        errors: 0.0,
        latency_rate: 0.0,
        latency: Duration::from_millis(1),
        hangs: 0.0,
    },
    Phase {
        name: "outage",
        until: 0.7,
        errors: 1.0,
        latency_rate: 0.0,
        latency: Duration::from_millis(1),
        hangs: 0.0,
    },
    Phase {
        name: "recovering",
        until: 1.01,
        errors: 0.0,
        latency_rate: 0.0,
        latency: Duration::from_millis(1),
        hangs: 0.0,
    },
];

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

struct Front {
    name: &'static str,
    addr: SocketAddr,
    /// Requests the rate limit let through, per client.
    admitted: Counts,
    breaker: RedisCircuitBreakerLayer,
    backend: RedisBackend,
}

async fn start_front(name: &'static str, url: &str, backend_addr: SocketAddr) -> Result<Front, BoxError> {
    // One connection per front: the fronts share nothing but the Redis server.
    let redis = RedisBackend::builder(url)
        .name(format!("redis-{name}"))
        .timeout(Duration::from_millis(100))
        .build()?;
    let limiter = RedisRateLimiter::builder("per-client", redis.clone())
        .tier(Quota::per(LIMIT, Duration::from_secs(1)))
        .on_redis_down(OnRedisDown::Local { share: 0.5 })
        .build()?;
    let breaker = RedisCircuitBreakerLayer::builder("backend", redis.clone())
        .failure_rate(0.5, 10)
        .time_window(Duration::from_secs(2), 10)
        .wait_in_open(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50))
        .build()?;

    let http: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let backend_client = service_fn(move |(): ()| {
        let http = http.clone();
        async move {
            let req = Request::get(format!("http://{backend_addr}/data")).body(Empty::new())?;
            let res = http.request(req).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            if status.is_server_error() {
                return Err(BoxError::from(format!("backend answered {status}")));
            }
            Ok::<_, BoxError>(body)
        }
    });
    let backend_stack = tower::util::BoxCloneSyncService::new(breaker.layer(backend_client));

    let admitted: Counts = Arc::default();
    let counts = admitted.clone();
    let app =
        Router::new()
            .route(
                "/api/data",
                get(move |req: Request<Body>| {
                    let backend = backend_stack.clone();
                    *counts.lock().unwrap().entry(client_id(&req)).or_default() += 1;
                    async move {
                        match backend.oneshot(()).await {
                            Ok(body) => Response::new(Body::from(body)),
                            Err(err) if find::<CircuitOpen>(&*err).is_some() => {
                                palisade::respond::http_response_for(&err)
                            }
                            Err(_) => {
                                let mut res = Response::new(Body::from("backend failed"));
                                *res.status_mut() = StatusCode::BAD_GATEWAY;
                                res
                            }
                        }
                    }
                }),
            )
            .route_layer(ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(
                AsyncRateLimitLayer::new("per-client", limiter, |req: &Request<Body>| Some(client_id(req))),
            ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Front { name, addr, admitted, breaker, backend: redis })
}

/// Statuses each front answered, per front.
type Statuses = Arc<Mutex<[BTreeMap<u16, u64>; 2]>>;

async fn drive(fronts: [SocketAddr; 2], until: Instant, statuses: Statuses) {
    let http: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (http, statuses) = (http.clone(), statuses.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / CLIENT_RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut inflight = tokio::task::JoinSet::new();
            let mut n = 0usize;
            while Instant::now() < until {
                tick.tick().await;
                let side = n % 2;
                n += 1;
                let req = Request::get(format!("http://{}/api/data", fronts[side]))
                    .header("x-client", format!("client-{c}"))
                    .body(Empty::new())
                    .expect("valid request");
                let (http, statuses) = (http.clone(), statuses.clone());
                inflight.spawn(async move {
                    let status = match tokio::time::timeout(Duration::from_secs(5), http.request(req)).await {
                        Ok(Ok(res)) => {
                            let status = res.status().as_u16();
                            let _ = res.into_body().collect().await;
                            status
                        }
                        _ => 0,
                    };
                    *statuses.lock().unwrap()[side].entry(status).or_default() += 1;
                });
            }
            while inflight.join_next().await.is_some() {}
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs `storm --redis`; returns whether the fleet held the quota and the breaker opened on
/// both fronts.
pub(crate) async fn run(seed: u64) -> Result<bool, BoxError> {
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        return Err(format!("storm --redis needs redis-server on the PATH: run `{INSTALL_HINT}`").into());
    }
    let server = RedisServer::start();
    let (backend_addr, chaos, _served) = start_backend(seed).await?;
    apply_phase(&chaos, REDIS_PHASES[0])?;
    let fronts = [
        start_front("A", &server.url(), backend_addr).await?,
        start_front("B", &server.url(), backend_addr).await?,
    ];
    println!(
        "storm --redis: redis-server on 127.0.0.1:{}, backend on {backend_addr}, front A on {}, front B on {}",
        server.port(),
        fronts[0].addr,
        fronts[1].addr
    );
    println!(
        "  {CLIENTS} clients x {CLIENT_RATE:.0} req/s (alternating A/B) for {RUN:?}; fleet quota {LIMIT}/s per client, burst {LIMIT}"
    );

    let statuses: Statuses = Arc::default();
    let started = Instant::now();
    let until = started + RUN;
    let load = tokio::spawn(drive([fronts[0].addr, fronts[1].addr], until, statuses.clone()));

    // Watch the backend script and each front's view of the shared breaker.
    let mut opened = [0u32; 2];
    let mut first_open: [Option<Duration>; 2] = [None; 2];
    let mut was_open = [false; 2];
    let mut phase = REDIS_PHASES[0].name;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while Instant::now() < until {
        tick.tick().await;
        let progress = started.elapsed().as_secs_f64() / RUN.as_secs_f64();
        let now = REDIS_PHASES.iter().copied().find(|p| progress < p.until).unwrap_or(REDIS_PHASES[2]);
        if now.name != phase {
            phase = now.name;
            apply_phase(&chaos, now)?;
            println!("  {:>5.1?}  backend: {phase}", started.elapsed());
        }
        for (i, f) in fronts.iter().enumerate() {
            let open = f.breaker.state() == RedisCircuitState::Open;
            if open && !was_open[i] {
                opened[i] += 1;
                first_open[i].get_or_insert(started.elapsed());
            }
            was_open[i] = open;
        }
    }
    load.await?;
    let elapsed = started.elapsed();

    // GCRA over the run: at most the burst plus one token per emission interval elapsed.
    let bound = LIMIT + (LIMIT as f64 * elapsed.as_secs_f64()).floor() as u64;
    let mut s = String::new();
    let _ = writeln!(s, "\nper-client rate limit, shared through Redis ({elapsed:.1?} of load):");
    let _ = writeln!(s, "  client      front A  front B    fleet  fleet bound  two local limiters  held");
    let [on_a, on_b] =
        [fronts[0].admitted.lock().unwrap().clone(), fronts[1].admitted.lock().unwrap().clone()];
    let mut held = true;
    for c in 0..CLIENTS {
        let id = format!("client-{c}");
        let (x, y) = (on_a.get(&id).copied().unwrap_or(0), on_b.get(&id).copied().unwrap_or(0));
        let ok = x + y <= bound;
        held &= ok;
        let _ = writeln!(s, "  {id:<10} {x:>8} {y:>8} {:>8} {bound:>12} {:>19}  {ok}", x + y, 2 * bound);
    }
    let _ = writeln!(s, "\nbackend breaker \"backend\", shared through Redis:");
    for (i, f) in fronts.iter().enumerate() {
        let first = first_open[i].map_or_else(|| "never".to_owned(), |t| format!("first at {t:.1?}"));
        let _ = writeln!(s, "  front {}: seen opening {}x, {first}", f.name, opened[i]);
    }
    if let [Some(x), Some(y)] = first_open {
        let gap = x.abs_diff(y);
        let gap = if gap < Duration::from_millis(5) {
            "within one 5 ms sample".to_owned()
        } else {
            format!("{gap:.0?} apart")
        };
        let _ = writeln!(s, "  the two fronts saw the fleet's first opening {gap} (poll interval 50 ms)");
    }
    let _ = writeln!(s, "\nresponses (status: count):");
    let statuses = statuses.lock().unwrap().clone();
    for (i, f) in fronts.iter().enumerate() {
        let row: Vec<String> = statuses[i]
            .iter()
            .map(|(code, n)| if *code == 0 { format!("no answer: {n}") } else { format!("{code}: {n}") })
            .collect();
        let r = f.backend.snapshot();
        let _ = writeln!(
            s,
            "  front {}: {}   (redis calls {}, failures {}, fallbacks {})",
            f.name,
            row.join("  "),
            r.calls,
            r.failures,
            r.fallbacks
        );
    }
    let opened_on_both = opened.iter().all(|n| *n > 0);
    let _ = writeln!(
        s,
        "\nthe fleet held the per-client quota: {held}; the breaker opened on both fronts: {opened_on_both}"
    );
    println!("{s}");
    Ok(held && opened_on_both)
}
