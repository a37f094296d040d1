//! Fleet-wide rate limiting against a local `redis-server` (started by the bench): palisade's
//! distributed GCRA in exact mode (one Lua script per decision) and with local batching, side
//! by side with the naive fixed window users hand-write (`INCR`, then `EXPIRE` on the first hit).
//! Decisions per second from one instance with 1, 16 and 64 concurrent callers; the goal
//! figures are measured with a client runtime of 1 and of 2 worker threads (see [`goals`]). After the
//! criterion entries it prints Redis round trips per admitted request, the added p50/p99
//! latency per decision (one caller) and the fleet overshoot with batching (two instances).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    missing_docs,
    clippy::many_single_char_names
)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use palisade::redis::server::RedisServer;
use palisade::redis::{Quota, RedisBackend, RedisRateLimiter};
use redis::aio::ConnectionManager;

const CALLERS: [usize; 3] = [1, 16, 64];

#[derive(Clone)]
enum Limiter {
    Palisade(RedisRateLimiter),
    Naive(ConnectionManager, u64),
    /// The same GCRA script sent straight on the connection: no timeout, no guard breaker.
    Raw(ConnectionManager, redis::Script),
}

impl Limiter {
    async fn decide(&self, key: u64) -> bool {
        match self {
            Limiter::Palisade(l) => l.check(&format!("k{key}"), 1).await.unwrap().allowed,
            Limiter::Naive(conn, limit) => {
                let mut conn = conn.clone();
                let window =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let k = format!("naive:k{key}:{window}");
                let n: u64 = redis::cmd("INCR").arg(&k).query_async(&mut conn).await.unwrap();
                if n == 1 {
                    let _: () = redis::cmd("EXPIRE").arg(&k).arg(2).query_async(&mut conn).await.unwrap();
                }
                n <= *limit
            }
            Limiter::Raw(conn, script) => {
                let mut conn = conn.clone();
                let v: Vec<i64> = script
                    .key(format!("palisade:raw:{{k{key}}}:0"))
                    // one run of one decision: count, tiers, want, least, emission, burst
                    .arg(1)
                    .arg(1)
                    .arg(1)
                    .arg(1)
                    .arg(1)
                    .arg("1.0000")
                    .arg(1_000_000)
                    .invoke_async(&mut conn)
                    .await
                    .unwrap();
                v[0] >= 1
            }
        }
    }
}

async fn drive(l: &Limiter, callers: usize, iters: u64, keys: u64) -> (Duration, u64) {
    let per = iters.div_ceil(callers as u64).max(1);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..callers {
        let l = l.clone();
        set.spawn(async move {
            let mut ok = 0;
            for i in 0..per {
                ok += u64::from(l.decide((c as u64 + i) % keys).await);
            }
            ok
        });
    }
    let mut admitted = 0;
    while let Some(r) = set.join_next().await {
        admitted += r.unwrap();
    }
    (start.elapsed(), admitted)
}

/// One measurement: decisions per second and CPU per decision (µs).
#[derive(Clone, Copy)]
struct Cost {
    rate: f64,
    client: f64,
    server: f64,
    commands: f64,
}

impl Cost {
    /// The median rate, with the CPU figures of that measurement.
    fn median(mut v: Vec<Cost>) -> Cost {
        v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        v[v.len() / 2]
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s (per decision: client CPU {:.2} us, redis CPU {:.2} us, in commands {:.2} us wall)",
            self.rate, self.client, self.server, self.commands
        )
    }
}

/// This process' CPU time so far (Linux `/proc/self/stat`, 100 ticks a second; zero elsewhere).
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        let rest = s.get(s.rfind(')')? + 2..)?;
        let f: Vec<&str> = rest.split(' ').collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    });
    Duration::from_millis(ticks.unwrap_or(0) * 10)
}

/// redis-server's CPU time so far (`INFO cpu`) and its time inside commands since the last
/// `CONFIG RESETSTAT` (`INFO commandstats`), in µs.
async fn server_cpu(admin: &mut ConnectionManager) -> (f64, f64) {
    let info: String = redis::cmd("INFO").arg("cpu").arg("commandstats").query_async(admin).await.unwrap();
    let mut cpu = 0.0;
    let mut commands = 0.0;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("used_cpu_user:").or_else(|| line.strip_prefix("used_cpu_sys:")) {
            cpu += v.trim().parse::<f64>().unwrap_or(0.0) * 1e6;
        }
        if line.starts_with("cmdstat_")
            && !line.starts_with("cmdstat_config")
            && !line.starts_with("cmdstat_info")
        {
            if let Some(usec) = line.split(',').find_map(|kv| kv.strip_prefix("usec=")) {
                commands += usec.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    (cpu, commands)
}

async fn measure(l: &Limiter, callers: usize, n: u64, keys: u64, admin: &mut ConnectionManager) -> Cost {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(admin).await.unwrap();
    let (s0, _) = server_cpu(admin).await;
    let c0 = process_cpu();
    let (d, _) = drive(l, callers, n, keys).await;
    let c1 = process_cpu();
    let (s1, commands) = server_cpu(admin).await;
    let per = |us: f64| us / n as f64;
    Cost {
        rate: n as f64 / d.as_secs_f64(),
        client: per(c1.saturating_sub(c0).as_secs_f64() * 1e6),
        server: per(s1 - s0),
        commands: per(commands),
    }
}

/// A limiter with the default coalescing (exact: concurrent decisions share one script call).
fn limiter(url: &str, name: &str, quota: Quota, batch: Option<u64>) -> (RedisRateLimiter, RedisBackend) {
    limiter_with(url, name, quota, batch, None)
}

fn limiter_with(
    url: &str,
    name: &str,
    quota: Quota,
    batch: Option<u64>,
    coalesce: Option<usize>,
) -> (RedisRateLimiter, RedisBackend) {
    let backend = RedisBackend::builder(url).timeout(Duration::from_secs(1)).build().unwrap();
    let mut b = RedisRateLimiter::builder(name, backend.clone()).tier(quota);
    if let Some(max) = coalesce {
        b = b.coalesce(max);
    }
    if let Some(k) = batch {
        b = b.batch(k, Duration::from_secs(1));
    }
    (b.build().unwrap(), backend)
}

/// The goals side by side in one run: decisions/s and the ratio to the naive approach, the
/// median of 3 rounds that take turns (the machine is shared: one short measurement each is
/// noise), with what a decision costs: this process' CPU (client) and redis-server's CPU
/// (`INFO cpu`), and of the latter the time inside the commands (`INFO commandstats`:
/// EVALSHA, or INCR + EXPIRE).
///
/// Measured twice, with a client runtime of `workers` worker threads: with 1, redis-server
/// keeps the machine's other core to itself, as on a host of its own in a fleet; with 2, the
/// client and redis-server share both cores (three busy threads on two cores), which favours
/// the client that spends more CPU per decision (the naive one: a command per decision).
fn goals(url: &str, workers: usize, quota: Quota) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    rt.block_on(async {
        let (exact, _) = limiter(url, "goal-exact", quota, None);
        let (batched, _) = limiter(url, "goal-batched", quota, Some(1_000));
        let (uncoalesced, _) = limiter_with(url, "goal-uncoalesced", quota, None, Some(0));
        let client = redis::Client::open(url).unwrap();
        let naive = ConnectionManager::new(client.clone()).await.unwrap();
        let mut admin = ConnectionManager::new(client).await.unwrap();
        let entries = [
            Limiter::Palisade(exact),
            Limiter::Naive(naive, 1_000_000),
            Limiter::Palisade(uncoalesced),
            Limiter::Palisade(batched),
        ];
        eprintln!("client runtime with {workers} worker thread(s):");
        for callers in CALLERS {
            let n = if callers == 1 { 40_000 } else { 150_000 };
            let runs = [(1, n, 64), (0, n, 64), (2, n, 64), (3, 10 * n, 4)];
            let mut m: Vec<Vec<Cost>> = vec![Vec::new(); runs.len()];
            for _ in 0..3 {
                for (i, &(e, n, keys)) in runs.iter().enumerate() {
                    m[i].push(measure(&entries[e], callers, n, keys, &mut admin).await);
                }
            }
            let [naive, exact, uncoalesced, batched] =
                [0, 1, 2, 3].map(|i| Cost::median(std::mem::take(&mut m[i])));
            eprintln!(
                "{callers:>2} callers: naive {naive}; gcra-exact {exact}, {:.2}x naive; \
                 gcra-exact-uncoalesced {uncoalesced}, {:.2}x; gcra-batched {:.0}/s",
                exact.rate / naive.rate,
                uncoalesced.rate / naive.rate,
                batched.rate,
            );
        }
    });
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Large quotas: the pass path is measured (a refusal costs the same round trip).
    let quota = Quota::per(1_000_000, Duration::from_secs(1));
    let (exact, exact_backend, batched, batched_backend, naive, naive2, uncoalesced) = rt.block_on(async {
        let (exact, eb) = limiter(&url, "exact", quota, None);
        let (batched, bb) = limiter(&url, "batched", quota, Some(1_000));
        let (uncoalesced, _) = limiter_with(&url, "uncoalesced", quota, None, Some(0));
        let client = redis::Client::open(url.as_str()).unwrap();
        let naive = ConnectionManager::new(client.clone()).await.unwrap();
        let naive2 = ConnectionManager::new(client).await.unwrap();
        (exact, eb, batched, bb, naive, naive2, uncoalesced)
    });
    let entries = [
        ("gcra-exact", Limiter::Palisade(exact), 64),
        ("naive-incr-expire", Limiter::Naive(naive, 1_000_000), 64),
        ("gcra-exact-uncoalesced", Limiter::Palisade(uncoalesced), 64),
        ("gcra-batched", Limiter::Palisade(batched), 4),
        ("gcra-raw-script", Limiter::Raw(naive2, redis::Script::new(palisade::redis::GCRA_SCRIPT)), 64),
    ];
    let mut g = c.benchmark_group("redis");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for callers in CALLERS {
        for (name, l, keys) in &entries {
            g.bench_function(format!("{name}/{callers}-callers"), |b| {
                b.iter_custom(|iters| rt.block_on(drive(l, callers, iters, *keys)).0);
            });
        }
    }
    g.finish();

    for workers in [1, 2] {
        goals(&url, workers, quota);
    }

    rt.block_on(async {
        // Round trips per admitted request, 64 callers.
        for (name, l, backend, keys) in [
            ("gcra-exact", &entries[0].1, &exact_backend, 64),
            ("gcra-batched", &entries[3].1, &batched_backend, 4),
        ] {
            let before = backend.snapshot().calls;
            let (_, admitted) = drive(l, 64, 100_000, keys).await;
            let trips = backend.snapshot().calls - before;
            eprintln!(
                "round trips per admitted request, {name}: {:.4} ({trips} / {admitted})",
                trips as f64 / admitted.max(1) as f64
            );
        }
        eprintln!(
            "round trips per admitted request, naive-incr-expire: >= 1 (INCR, plus EXPIRE once per window)"
        );
        // Added latency per decision on loopback, one caller.
        for (name, l) in [
            ("gcra-exact", &entries[0].1),
            ("naive-incr-expire", &entries[1].1),
            ("gcra-exact-uncoalesced", &entries[2].1),
            ("gcra-batched", &entries[3].1),
        ] {
            let mut lat: Vec<Duration> = Vec::with_capacity(20_000);
            for i in 0..20_000u64 {
                let t = Instant::now();
                std::hint::black_box(l.decide(i % 4).await);
                lat.push(t.elapsed());
            }
            lat.sort_unstable();
            eprintln!(
                "latency per decision, {name}: p50 {:?}, p99 {:?}",
                lat[lat.len() / 2],
                lat[lat.len() * 99 / 100]
            );
        }
        // Fleet overshoot with batching: two instances, one hot key, quota with no refill to
        // speak of (1,000 per hour), block size 5 (bound: 2 × (5 − 1) = 8 = 0.8 %).
        let q = Quota::per(1_000, Duration::from_secs(3600));
        let (a, _) = limiter(&url, "overshoot", q, Some(5));
        let (b, _) = limiter(&url, "overshoot", q, Some(5));
        let (a, b) = (Limiter::Palisade(a), Limiter::Palisade(b));
        let ((_, x), (_, y)) = tokio::join!(drive(&a, 32, 5_000, 1), drive(&b, 32, 5_000, 1));
        eprintln!(
            "batching, two instances, quota 1000, block 5: admitted {} (overshoot {:+})",
            x + y,
            (x + y) as i64 - 1000
        );
    });
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
