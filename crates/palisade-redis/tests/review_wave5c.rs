//! Review of the GCRA script's one-read path (wave 5c): values under the limiter's prefix
//! that `tonumber` reads but that are no arrival time, and the largest call (1,024
//! decisions of 8 tiers: several `MGET`s).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use futures_util::future::join_all;
use palisade_redis::server::RedisServer;
use palisade_redis::{OnRedisDown, Quota, RedisBackend, RedisRateLimiter, Source};

const HOUR: Duration = Duration::from_secs(3600);

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Stalls every client of `server` for `ms` real milliseconds, so that the checks issued
/// meanwhile queue in the limiter's dispatcher and go to Redis together.
async fn pause(server: &RedisServer, ms: u64) {
    let mut c = raw(server).await;
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("ALL").query_async(&mut c).await.unwrap();
}

fn limiter(server: &RedisServer, name: &str, tiers: &[Quota], coalesce: usize) -> RedisRateLimiter {
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(20)).build().unwrap();
    let mut b =
        RedisRateLimiter::builder(name, backend).on_redis_down(OnRedisDown::FailClosed).coalesce(coalesce);
    for q in tiers {
        b = b.tier(*q);
    }
    b.build().unwrap()
}

/// `keys` checked (weight 1 each) while Redis is paused, decided together after.
async fn together(
    server: &RedisServer,
    l: &RedisRateLimiter,
    keys: &[String],
) -> Vec<palisade_redis::Decision> {
    assert_eq!(l.check("warm", 1).await.unwrap().source, Source::Redis);
    pause(server, 300).await;
    let checks = keys.iter().map(|key| {
        let l = l.clone();
        let key = key.clone();
        async move { l.check(&key, 1).await.unwrap() }
    });
    join_all(checks).await
}

/// Every key of the limiter holding `key`'s tiers.
async fn tier_keys(server: &RedisServer, key: &str) -> Vec<String> {
    let mut c = raw(server).await;
    let mut keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("*{{{key}}}*")).query_async(&mut c).await.unwrap();
    keys.sort();
    keys
}

/// A string `tonumber` reads that no arrival time can be ("nan", "inf", a time past 2^53 µs)
/// reads as a fresh bucket, as any other value that is not an arrival time: before, "nan"
/// failed the script call (`SET … PXAT nan`), and so every decision coalesced with it, and
/// "inf" or "1e300" refused the key for ever (a `retry_after` of ~292,000 years).
#[tokio::test(flavor = "current_thread")]
async fn a_number_that_is_no_arrival_time_reads_as_a_fresh_bucket() {
    for (i, poison) in ["nan", "inf", "-inf", "1e300", "1e20"].into_iter().enumerate() {
        let server = RedisServer::start();
        for tiers in [&[Quota::per(100, HOUR)][..], &[Quota::per(100, HOUR), Quota::per(50, HOUR)][..]] {
            let name = format!("poison{i}-{}", tiers.len());
            let l = limiter(&server, &name, tiers, 128);
            let bad = format!("bad{}", tiers.len());
            assert!(l.check(&bad, 1).await.unwrap().allowed);
            let mut c = raw(&server).await;
            for k in tier_keys(&server, &bad).await {
                let _: () = redis::cmd("SET").arg(&k).arg(poison).query_async(&mut c).await.unwrap();
            }
            let names: Vec<String> =
                (0..24).map(|j| if j % 8 == 2 { bad.clone() } else { format!("k{j}") }).collect();
            let d = together(&server, &l, &names).await;
            assert!(
                d.iter().all(|d| d.source == Source::Redis && d.allowed),
                "{poison:?} under {} tiers: {d:?}",
                tiers.len()
            );
            // a fresh bucket spent three times (in whatever order): the tightest tier has 3 fewer
            let last = d.iter().zip(&names).filter(|(_, n)| **n == bad).map(|(d, _)| d.remaining).min();
            assert_eq!(last, Some(if tiers.len() == 1 { 97 } else { 47 }), "{poison:?}: {d:?}");
        }
    }
}

/// The largest call the limiter makes: 1,024 decisions of 8 tiers (8,192 keys, read by
/// several `MGET`s), keys repeated within the call, decides as deciding each alone would.
#[tokio::test(flavor = "current_thread")]
async fn the_largest_call_decides_as_each_decision_alone() {
    let server = RedisServer::start();
    // the tightest tier admits 3 an hour per key
    let tiers: Vec<Quota> = (0..8).map(|i| Quota::per(3 + 10 * (7 - i), HOUR)).collect();
    let l = limiter(&server, "largest", &tiers, 1024);
    // 256 distinct keys, each asked 4 times, interleaved: the 4th of each is refused
    let names: Vec<String> = (0..1024).map(|i| format!("k{}", i % 256)).collect();
    let d = together(&server, &l, &names).await;
    assert!(
        d.iter().all(|d| d.source == Source::Redis),
        "{:?}",
        d.iter().find(|d| d.source != Source::Redis)
    );
    // per key (its four decisions in whatever order the dispatcher sent them): 3 admitted
    // leaving 2, 1 and 0, one refused until the tightest tier's next token, 20 minutes on
    for key in 0..256 {
        let mine: Vec<_> = d.iter().skip(key).step_by(256).collect();
        let mut left: Vec<u64> = mine.iter().filter(|d| d.allowed).map(|d| d.remaining).collect();
        left.sort_unstable();
        assert_eq!(left, [0, 1, 2], "k{key}: {mine:?}");
        let refused = mine.iter().find(|d| !d.allowed).unwrap();
        assert!(
            refused.retry_after > Duration::from_secs(1190)
                && refused.retry_after <= Duration::from_secs(1200),
            "k{key}: {mine:?}"
        );
    }
    // and Redis holds what deciding them one by one leaves: nothing more for any key
    for k in ["k0", "k255", "k128"] {
        let again = l.check(k, 1).await.unwrap();
        assert!(!again.allowed && again.source == Source::Redis, "{k}: {again:?}");
    }
}

/// A refund of an admission whose slot time has already passed gives back nothing: later
/// admissions were built on the bucket as it refilled, not on that slot (the local GCRA's
/// refund gives back only the part of the slot still ahead). The refund script took the whole
/// weight off the TAT whatever the time: with one token a second, A admitted at 0, B at
/// 1.1 s, A given back at 1.1 s emptied the bucket's debt and C was admitted at once beside
/// B (two in a second). Now the reply carries each admission's arrival time and `refund`
/// takes the decision (review wave 5c found it; fixed in the refund script).
#[tokio::test(flavor = "current_thread")]
async fn a_refund_after_its_slot_passed_gives_back_nothing() {
    let server = RedisServer::start();
    let l = limiter(&server, "late-refund", &[Quota::per(1, Duration::from_secs(1))], 0);
    let a = l.check("k", 1).await.unwrap();
    assert!(a.allowed && a.source == Source::Redis, "{a:?}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let b = l.check("k", 1).await.unwrap();
    assert!(b.allowed, "{b:?}");
    l.refund("k", 1, &a).await;
    let c = l.check("k", 1).await.unwrap();
    assert!(!c.allowed, "B and C admitted within a second at one a second: {c:?}");
}

/// The GCRA script's text, read from the source (it is crate-private): the differential
/// test below runs it with `EVAL` on hand-made calls the limiter's dispatcher makes only
/// by chance (repeated keys across runs of different quotas, weights and batching bounds).
fn gcra_script() -> String {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/gcra.rs")).unwrap();
    let start = src.find("const GCRA_LUA: &str = r\"").unwrap() + "const GCRA_LUA: &str = r\"".len();
    let end = start + src[start..].find("\n\";").unwrap();
    src[start..end].to_owned()
}

/// A small deterministic generator (xorshift64*): the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

/// One decision: its tier keys and, per tier, (emission µs, burst); what it asks.
#[derive(Clone, Debug)]
struct Ask {
    keys: Vec<String>,
    tiers: Vec<(u64, u64)>,
    want: u64,
    least: u64,
}

/// Runs `asks` in one script call: one run per decision (the script's runs share nothing
/// but keys). Returns each decision's (grant, value) as the script answers it.
async fn eval(c: &mut redis::aio::MultiplexedConnection, script: &str, asks: &[Ask]) -> Vec<(i64, i64)> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(asks.iter().map(|a| a.keys.len()).sum::<usize>());
    for a in asks {
        for k in &a.keys {
            cmd.arg(k);
        }
    }
    cmd.arg(asks.len());
    for a in asks {
        cmd.arg(1).arg(a.tiers.len()).arg(a.want).arg(a.least);
        for (t, b) in &a.tiers {
            cmd.arg(t.to_string()).arg(*b);
        }
    }
    let out: Vec<i64> = cmd.query_async(c).await.unwrap();
    let mut it = out.into_iter();
    let answers = asks
        .iter()
        .map(|a| {
            let grant = if a.want == a.least { a.want as i64 } else { it.next().unwrap() };
            let v = it.next().unwrap();
            if v >= 0 {
                // an admission's arrival time in each tier (for a refund): read Redis' clock
                for _ in &a.tiers {
                    assert!(it.next().unwrap() > 0);
                }
            }
            (if v < 0 { 0 } else { grant }, v)
        })
        .collect();
    assert!(it.next().is_none());
    answers
}

/// Deciding many decisions in one script call (one `MGET`, the `cur` table for keys seen
/// again) answers as deciding each in a call of its own, in order: random calls of up to
/// 40 decisions over 4 keys shared across decisions and across tiers of one decision,
/// 1-3 tiers of hour-long quotas (nothing refills between the calls), weights and
/// batching bounds (`want` > `least`); and three of 1,024 decisions of 8 tiers over
/// 3,000 keys.
#[tokio::test(flavor = "current_thread")]
async fn one_call_decides_as_each_decision_alone() {
    let server = RedisServer::start();
    let mut c = raw(&server).await;
    let script = gcra_script();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let few: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let many: Vec<String> = (0..3_000).map(|i| format!("k{i}")).collect();
    for case in 0..303 {
        // the last cases are the largest call: 1,024 decisions of 8 tiers (several MGETs)
        let big = case >= 300;
        let (n, keys) = if big { (1_024, &many) } else { (1 + rng.below(40) as usize, &few) };
        let asks: Vec<Ask> = (0..n)
            .map(|_| {
                let tiers = if big { 8 } else { 1 + rng.below(3) as usize };
                let least = 1 + rng.below(3);
                let want = if rng.below(2) == 0 { least } else { least + rng.below(4) };
                Ask {
                    keys: (0..tiers).map(|_| keys[rng.below(keys.len() as u64) as usize].clone()).collect(),
                    // 1 to 6 tokens an hour, bursts up to 8: no token refills during a case
                    tiers: (0..tiers)
                        .map(|_| (3_600_000_000 / (1 + rng.below(6)), 1 + rng.below(8)))
                        .collect(),
                    want,
                    least,
                }
            })
            .collect();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
        let together = eval(&mut c, &script, &asks).await;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
        let mut alone = Vec::new();
        for a in &asks {
            alone.extend(eval(&mut c, &script, std::slice::from_ref(a)).await);
        }
        for (i, ((g1, v1), (g2, v2))) in together.iter().zip(&alone).enumerate() {
            let same = g1 == g2
                && if *v1 >= 0 || *v2 >= 0 {
                    v1 == v2
                } else {
                    // a retry in µs: the calls alone read Redis' clock later
                    (v1 - v2).abs() <= 1_000_000
                };
            assert!(
                same,
                "case {case}, decision {i}: together {:?}, alone {:?}\n{asks:?}",
                (g1, v1),
                (g2, v2)
            );
        }
    }
}
