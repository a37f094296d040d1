//! Fleet-wide rate limiting against a local `redis-server` (started by the bench): palisade's
//! distributed GCRA in exact mode (one Lua script per decision) and with local batching, side
//! by side with the naive fixed window users hand-write (`INCR`, then `EXPIRE` on the first hit).
//! Decisions per second from one instance with 1, 16 and 64 concurrent callers. After the
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

    rt.block_on(async {
        // The goals side by side in one run: decisions/s and the ratio to the naive approach.
        for callers in CALLERS {
            let rate = |d: Duration, n: u64| n as f64 / d.as_secs_f64();
            let n = 50_000;
            let (dn, _) = drive(&entries[1].1, callers, n, 64).await;
            let (de, _) = drive(&entries[0].1, callers, n, 64).await;
            let (du, _) = drive(&entries[2].1, callers, n, 64).await;
            let (db, _) = drive(&entries[3].1, callers, 20 * n, 4).await;
            let naive = rate(dn, n);
            eprintln!(
                "{callers:>2} callers: naive {naive:.0}/s, gcra-exact {:.0}/s ({:.2}x naive), \
                 gcra-exact-uncoalesced {:.0}/s ({:.2}x), gcra-batched {:.0}/s",
                rate(de, n),
                rate(de, n) / naive,
                rate(du, n),
                rate(du, n) / naive,
                rate(db, 20 * n)
            );
        }
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
