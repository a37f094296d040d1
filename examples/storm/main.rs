//! storm: palisade's full stack in front of a flaky backend, under load, on loopback.
//!
//! ```sh
//! cargo run --release --example storm --features full         # 20 s, live view
//! cargo run --release --example storm --features full -- --plain  # no live view (CI logs)
//! cargo run --release --example storm --features full -- --duration 40s --rate 600 --seed 7
//! ```
//!
//! Three parts run in this one process, all on 127.0.0.1:
//!
//! 1. **backend**: an axum server whose `/data` route sits behind a [`ChaosLayer`]. A script
//!    walks it through phases — healthy, slow, failing, outage, recovering — by changing the
//!    chaos rates at run time through the layer's handle.
//! 2. **front**: an axum server whose `/api/data` route calls the backend through the full
//!    palisade stack: per-client rate limit and a bulkhead on the route (rejections become
//!    429/503 responses through `HttpRejectionLayer`), and around the backend client a
//!    fallback (stale answer), a total timeout, retry with a budget, and a circuit breaker.
//! 3. **load**: well-behaved clients and a few abusive ones sending requests at a fixed rate
//!    with a hyper client.
//!
//! While it runs it shows what each layer did; at the end it prints a summary and exits 0.
//!
//! `--soak [--requests N]` runs the soak instead: a million requests in-process through the
//! full stack against an inner service that fails, hangs and panics (see `soak.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::{BulkheadHandle, BulkheadLayer};
use palisade::chaos::{ChaosHandle, ChaosLayer};
use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use palisade::classify::HttpClassifier;
use palisade::fallback::{FallbackContext, FallbackHandle, FallbackLayer};
use palisade::rate_limit::{Quota, RateLimitHandle, RateLimitLayer};
use palisade::respond::HttpRejectionLayer;
use palisade::retry::{Backoff, Jitter, RetryBudget, RetryHandle, RetryLayer};
use palisade::timeout::TimeoutLayer;
use palisade::BoxError;
use tokio::sync::Semaphore;
use tower::{service_fn, ServiceBuilder, ServiceExt};

mod prometheus;
#[cfg(feature = "redis")]
mod redis;
mod soak;

// === arguments ===

struct Args {
    duration: Duration,
    rate: u32,
    plain: bool,
    seed: u64,
    soak: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { duration: Duration::from_secs(20), rate: 300, plain: false, seed: 42, soak: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--duration" => {
                args.duration =
                    palisade::duration::parse_duration(&value("--duration")?).map_err(|e| e.to_string())?;
            }
            "--rate" => {
                args.rate = value("--rate")?.parse().map_err(|_| "--rate takes requests per second")?;
            }
            "--seed" => args.seed = value("--seed")?.parse().map_err(|_| "--seed takes a number")?,
            "--plain" => args.plain = true,
            "--soak" => args.soak = Some(args.soak.unwrap_or(1_000_000)),
            "--requests" => {
                args.soak = Some(value("--requests")?.parse().map_err(|_| "--requests takes a number")?);
            }
            "-h" | "--help" => {
                println!("usage: storm [--duration 20s] [--rate 300] [--seed 42] [--plain] [--soak [--requests N]]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}; try --help")),
        }
    }
    if args.duration < Duration::from_secs(1) || args.duration > Duration::from_secs(600) {
        return Err("--duration must be between 1s and 10m".into());
    }
    if !(10..=20_000).contains(&args.rate) {
        return Err("--rate must be between 10 and 20000".into());
    }
    Ok(args)
}

// === backend ===

#[derive(Clone, Copy, Debug)]
struct Phase {
    name: &'static str,
    until: f64,
    errors: f64,
    latency_rate: f64,
    latency: Duration,
    hangs: f64,
}

/// The backend's script, as fractions of the run.
const PHASES: [Phase; 5] = [
    Phase {
        name: "healthy",
        until: 0.2,
        errors: 0.01,
        latency_rate: 0.05,
        latency: Duration::from_millis(5),
        hangs: 0.0,
    },
    Phase {
        name: "slow",
        until: 0.4,
        errors: 0.05,
        latency_rate: 0.6,
        latency: Duration::from_millis(60),
        hangs: 0.002,
    },
    Phase {
        name: "failing",
        until: 0.6,
        errors: 0.45,
        latency_rate: 0.1,
        latency: Duration::from_millis(10),
        hangs: 0.01,
    },
    Phase {
        name: "outage",
        until: 0.75,
        errors: 1.0,
        latency_rate: 0.0,
        latency: Duration::from_millis(1),
        hangs: 0.0,
    },
    Phase {
        name: "recovering",
        until: 1.01,
        errors: 0.02,
        latency_rate: 0.05,
        latency: Duration::from_millis(5),
        hangs: 0.0,
    },
];

fn phase_at(progress: f64) -> Phase {
    PHASES.iter().copied().find(|p| progress < p.until).unwrap_or(PHASES[PHASES.len() - 1])
}

async fn start_backend(seed: u64) -> Result<(SocketAddr, ChaosHandle, Arc<AtomicU64>), BoxError> {
    let served = Arc::new(AtomicU64::new(0));
    let chaos = ChaosLayer::builder()
        .name("backend")
        .seed(seed)
        .latency(Duration::from_millis(5))
        .outcome_with(|_req: &Request<Body>| {
            let mut res = Response::new(Body::from("backend unavailable"));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            res
        })
        .build()?;
    let handle = chaos.handle();
    let counter = served.clone();
    let app = Router::new()
        .route(
            "/data",
            get(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                async { "fresh payload" }
            }),
        )
        .route_layer(ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(chaos));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, handle, served))
}

fn apply_phase(chaos: &ChaosHandle, phase: Phase) -> Result<(), BoxError> {
    chaos.set_latency(phase.latency)?;
    chaos.set_outcome_rate(phase.errors)?;
    chaos.set_latency_rate(phase.latency_rate)?;
    chaos.set_hang_rate(phase.hangs)?;
    Ok(())
}

// === front ===

struct Handles {
    rate_limit: RateLimitHandle,
    bulkhead: BulkheadHandle,
    breaker: CircuitBreakerHandle,
    retry: RetryHandle,
    fallback: FallbackHandle,
}

/// A call to the backend: cheap to clone, so retry can send it again.
#[derive(Clone, Debug)]
struct BackendCall {
    path: &'static str,
}

type BackendResponse = Response<Bytes>;

fn client_id(req: &Request<Body>) -> String {
    req.headers()
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "anonymous".to_owned(), str::to_owned)
}

async fn start_front(backend: SocketAddr) -> Result<(SocketAddr, Handles), BoxError> {
    let http: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    // The raw backend client: one HTTP GET per call, the body read in full.
    let backend_client = service_fn(move |call: BackendCall| {
        let http = http.clone();
        async move {
            let uri = format!("http://{backend}{}", call.path);
            let req = Request::get(uri).body(Empty::new()).map_err(BoxError::from)?;
            let res = http.request(req).await.map_err(BoxError::from)?;
            let (parts, body) = res.into_parts();
            let bytes = body.collect().await.map_err(BoxError::from)?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, bytes))
        }
    });

    let breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .failure_rate(0.5)
        .count_window(40)
        .minimum_calls(20)
        .wait_in_open(Duration::from_secs(1))
        .classifier(HttpClassifier::new())
        .build()?;
    let retry = RetryLayer::builder()
        .name("backend")
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(10)))
        .jitter(Jitter::Full)
        .max_delay(Duration::from_millis(200))
        .attempt_timeout(Duration::from_millis(250))
        .budget(RetryBudget::ratio(Duration::from_secs(10), 10, 0.2)?)
        .classifier(HttpClassifier::new())
        .build()?;
    let fallback = FallbackLayer::builder()
        .name("stale-cache")
        .fallback_fn(|_ctx: FallbackContext<BackendCall, BackendResponse>| async {
            let mut res = Response::new(Bytes::from_static(b"stale payload"));
            res.headers_mut().insert("x-fallback", HeaderValue::from_static("stale"));
            Ok::<_, BoxError>(res)
        })
        .build()?;
    let handles_partial = (breaker.handle(), retry.handle(), fallback.handle());

    let backend_stack = ServiceBuilder::new()
        .layer(fallback)
        .layer(TimeoutLayer::new(Duration::from_millis(800)))
        .layer(retry)
        .layer(breaker)
        .service(backend_client);
    // Boxed, and this is needed, not just tidy: `backend_client` (and the fallback) are
    // closures returning `BoxError`, and with a closure type whose signature mentions
    // `BoxError` inside the stack's type, rustc cannot prove that the axum handler's future
    // below is `Send` — "implementation of `From` is not general enough",
    // rust-lang/rust#64552 — so the route would not compile. Erasing the stack's type once,
    // at the outermost layer, fixes it for one allocation per call and gives the stack a
    // short name to store (`BoxCloneSyncService<BackendCall, BackendResponse, BoxError>`).
    // The other ways out (a concrete error type in the inner service, an `async fn` instead
    // of a closure) are in `palisade::guide`.
    let backend_stack = tower::util::BoxCloneSyncService::new(backend_stack);

    let rate_limit = RateLimitLayer::builder()
        .name("per-client")
        .quota(Quota::per_second(40).burst(20))
        .keyed(|req: &Request<Body>| Some(client_id(req)))
        .build()?;
    let bulkhead = BulkheadLayer::builder()
        .name("api")
        .max_concurrent(64)
        .when_full(palisade_core::WhenFull::wait(Duration::from_millis(100)))
        .max_queue(128)
        .build()?;
    let handles = Handles {
        rate_limit: rate_limit.handle(),
        bulkhead: bulkhead.handle(),
        breaker: handles_partial.0,
        retry: handles_partial.1,
        fallback: handles_partial.2,
    };

    let app = Router::new()
        .route(
            "/api/data",
            get(move || {
                let backend = backend_stack.clone();
                async move {
                    match backend.oneshot(BackendCall { path: "/data" }).await {
                        Ok(res) => res.map(Body::from),
                        Err(err) => palisade::respond::http_response_for(&err),
                    }
                }
            }),
        )
        .route_layer(
            ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(rate_limit).layer(bulkhead),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, handles))
}

// === load ===

#[derive(Default)]
struct Tally {
    sent: u64,
    fresh: u64,
    stale: u64,
    by_status: BTreeMap<u16, u64>,
    errors: u64,
    latencies_us: Vec<u32>,
}

#[derive(Default)]
struct Results {
    kinds: BTreeMap<&'static str, Tally>,
}

impl Results {
    fn record(&mut self, kind: &'static str, outcome: Result<(u16, bool), ()>, latency: Duration) {
        let t = self.kinds.entry(kind).or_default();
        t.sent += 1;
        t.latencies_us.push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
        match outcome {
            Ok((200, false)) => t.fresh += 1,
            Ok((200, true)) => t.stale += 1,
            Ok((status, _)) => *t.by_status.entry(status).or_default() += 1,
            Err(()) => t.errors += 1,
        }
    }

    fn total(&self) -> u64 {
        self.kinds.values().map(|t| t.sent).sum()
    }
}

struct LoadClient {
    id: String,
    kind: &'static str,
    per_second: f64,
}

fn load_clients(rate: u32) -> Vec<LoadClient> {
    let rate = f64::from(rate);
    let mut clients: Vec<LoadClient> = (0..6)
        .map(|i| LoadClient { id: format!("client-{i}"), kind: "well-behaved", per_second: rate * 0.6 / 6.0 })
        .collect();
    clients.extend((0..2).map(|i| LoadClient {
        id: format!("abuser-{i}"),
        kind: "abusive",
        per_second: rate * 0.4 / 2.0,
    }));
    clients
}

async fn drive(front: SocketAddr, clients: Vec<LoadClient>, until: Instant, results: Arc<Mutex<Results>>) {
    let http: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let http = http.clone();
        let results = results.clone();
        tasks.spawn(async move {
            let outstanding = Arc::new(Semaphore::new(256));
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / client.per_second));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut inflight = tokio::task::JoinSet::new();
            while Instant::now() < until {
                tick.tick().await;
                let Ok(permit) = outstanding.clone().try_acquire_owned() else { continue };
                let req = Request::get(format!("http://{front}/api/data"))
                    .header("x-client", client.id.as_str())
                    .body(Empty::new())
                    .expect("valid request");
                let http = http.clone();
                let results = results.clone();
                let kind = client.kind;
                inflight.spawn(async move {
                    let started = Instant::now();
                    let outcome = match tokio::time::timeout(Duration::from_secs(5), http.request(req)).await
                    {
                        Ok(Ok(res)) => {
                            let stale = res.headers().contains_key("x-fallback");
                            let status = res.status().as_u16();
                            let _ = res.into_body().collect().await;
                            Ok((status, stale))
                        }
                        _ => Err(()),
                    };
                    results.lock().unwrap().record(kind, outcome, started.elapsed());
                    drop(permit);
                });
            }
            while inflight.join_next().await.is_some() {}
        });
    }
    while tasks.join_next().await.is_some() {}
}

// === view ===

fn bar(progress: f64, width: usize) -> String {
    let filled = ((progress.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

fn layer_table(h: &Handles, chaos: &ChaosHandle, backend_served: u64) -> String {
    let rl = h.rate_limit.snapshot();
    let bh = h.bulkhead.snapshot();
    let cb = h.breaker.snapshot();
    let rt = h.retry.snapshot();
    let fb = h.fallback.snapshot();
    let ch = chaos.snapshot();
    let mut s = String::new();
    let rows = [
        (
            "rate limit (per client)",
            format!("admitted {:>7}  rejected {:>7}  keys {}", rl.admitted, rl.rejected, rl.keys),
        ),
        (
            "bulkhead",
            format!(
                "waited {:>9}  in flight {:>3}  queued {:>3}  rejected {}",
                bh.waited,
                bh.in_flight,
                bh.queued,
                bh.rejected()
            ),
        ),
        (
            "circuit breaker",
            format!(
                "state {:<9} opened {:>3}x  rejected {:>7}  failure rate {}",
                format!("{:?}", cb.state),
                cb.times_opened,
                cb.rejected,
                cb.failure_rate.map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0))
            ),
        ),
        (
            "retry",
            format!(
                "requests {:>7}  retries {:>6}  budget exhausted {:>5}  gave up {:>5}",
                rt.requests, rt.retries, rt.budget_exhausted, rt.gave_up
            ),
        ),
        ("timeouts", format!("attempt {:>6}  deadline {:>6}", rt.attempt_timeouts, rt.deadline_exceeded)),
        ("fallback (stale cache)", format!("triggered {:>6}  served {:>6}", fb.triggered, fb.fallbacks_used)),
        (
            "backend chaos",
            format!(
                "served {backend_served:>7}  5xx injected {:>6}  slowed {:>6}  hung {:>4}",
                ch.outcomes, ch.latencies, ch.hangs
            ),
        ),
    ];
    for (name, row) in rows {
        let _ = writeln!(s, "  {name:<24} {row}");
    }
    s
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Duration::from_micros(u64::from(sorted[i]))
}

fn summary(results: &mut Results) -> String {
    let mut s =
        String::from("  clients        sent   fresh   stale     429     503     504  other   p50      p99\n");
    for (kind, t) in &mut results.kinds {
        t.latencies_us.sort_unstable();
        let get = |code| t.by_status.get(&code).copied().unwrap_or(0);
        let other: u64 =
            t.by_status.iter().filter(|(c, _)| ![429, 503, 504].contains(*c)).map(|(_, n)| n).sum::<u64>()
                + t.errors;
        let _ = writeln!(
            s,
            "  {kind:<12} {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>5}  {:>7.1?} {:>7.1?}",
            t.sent,
            t.fresh,
            t.stale,
            get(429),
            get(503),
            get(504),
            other,
            percentile(&t.latencies_us, 0.5),
            percentile(&t.latencies_us, 0.99),
        );
    }
    s
}

// === main ===

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    if std::env::args().skip(1).any(|a| a == "--redis") {
        // Two fronts sharing their limits through Redis: see redis.rs.
        #[cfg(feature = "redis")]
        std::process::exit(i32::from(!redis::run(42).await?));
        #[cfg(not(feature = "redis"))]
        {
            eprintln!("storm --redis needs the redis feature: cargo run --release --example storm --features full -- --redis");
            std::process::exit(2);
        }
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("storm: {e}");
            std::process::exit(2);
        }
    };
    if let Some(requests) = args.soak {
        println!(
            "storm --soak: {requests} requests through the full stack (30 % fail, 1 % hang, 0.1 % panic)"
        );
        let report = soak::run(requests, 512, args.seed).await?;
        println!("{report:#?}");
        println!("memory end / after warm-up: {:.3}", report.memory_ratio());
        let ok = report.not_answered_once == 0
            && report.bulkhead_in_flight_after == 0
            && report.bulkhead_queued_after == 0
            && report.tasks_alive_after == report.tasks_alive_before;
        println!("every request answered exactly once, permits back, no task left: {ok}");
        std::process::exit(i32::from(!ok));
    }
    let live = !args.plain && std::io::stdout().is_terminal();

    let (backend, chaos, backend_served) = start_backend(args.seed).await?;
    let (front, handles) = start_front(backend).await?;
    let scrape = prometheus::serve().await?;
    println!(
        "storm: backend on {backend}, front on {front}; {} req/s for {:?} (seed {})",
        args.rate, args.duration, args.seed
    );
    println!("storm: Prometheus metrics at http://{scrape}/metrics while it runs");

    let started = Instant::now();
    let until = started + args.duration;
    let results = Arc::new(Mutex::new(Results::default()));
    let load = tokio::spawn(drive(front, load_clients(args.rate), until, results.clone()));

    let mut phase_name = "";
    let mut tick = tokio::time::interval(Duration::from_millis(if live { 250 } else { 100 }));
    let mut last_plain: Option<Instant> = None;
    while !load.is_finished() {
        tick.tick().await;
        let progress = started.elapsed().as_secs_f64() / args.duration.as_secs_f64();
        let phase = phase_at(progress);
        if phase.name != phase_name {
            apply_phase(&chaos, phase)?;
            phase_name = phase.name;
            if !live {
                println!("[{:>5.1}s] backend phase: {}", started.elapsed().as_secs_f64(), phase.name);
            }
        }
        let sent = results.lock().unwrap().total();
        if live {
            let mut out = std::io::stdout().lock();
            write!(
                out,
                "\x1b[H\x1b[2Jstorm  {} {:>3.0}%  backend: {:<10} requests answered: {}\n\n{}",
                bar(progress, 40),
                (progress * 100.0).min(100.0),
                phase.name,
                sent,
                layer_table(&handles, &chaos, backend_served.load(Ordering::Relaxed))
            )?;
            out.flush()?;
        } else if last_plain.is_none_or(|at| at.elapsed() >= Duration::from_secs(2)) {
            last_plain = Some(Instant::now());
            println!(
                "[{:>5.1}s] {} answered {sent}; breaker {:?}; retries {}; fallbacks {}",
                started.elapsed().as_secs_f64(),
                bar(progress, 20),
                handles.breaker.state(),
                handles.retry.snapshot().retries,
                handles.fallback.snapshot().fallbacks_used,
            );
        }
    }
    load.await?;

    let mut results = std::mem::take(&mut *results.lock().unwrap());
    println!("\n== storm summary ({:.1?}, {} requests) ==\n", started.elapsed(), results.total());
    println!("{}", summary(&mut results));
    println!("  what each layer did:");
    println!("{}", layer_table(&handles, &chaos, backend_served.load(Ordering::Relaxed)));
    Ok(())
}
