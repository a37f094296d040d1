//! A circuit breaker shared by the fleet: outcomes counted in Redis, one open state for all.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::rejection::CircuitOpen;
use palisade_core::time::deadline_after;
use palisade_core::BoxError;
use tokio::time::Instant;
use tower_service::Service;

use crate::backend::{LuaScript, RedisBackend};
use crate::service::fleet_service;

/// Records one outcome in the current time bucket and opens the fleet's breaker when the
/// window's failure rate reaches the threshold. `KEYS[1]`: the open-state key, `KEYS[2]`: the
/// bucket key prefix. `ARGV`: failed (0/1), bucket ms, buckets, minimum calls, failure rate
/// (0–1), wait in open ms. Returns the open state's remaining ms (0 = closed).
const RECORD_LUA: &str = r"
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then return pttl end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bms = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local idx = math.floor(now / bms)
local cur = KEYS[2] .. ':' .. idx
redis.call('HINCRBY', cur, 'total', 1)
if ARGV[1] == '1' then redis.call('HINCRBY', cur, 'fail', 1) end
redis.call('PEXPIRE', cur, bms * (n + 1))
local total, fail = 0, 0
for i = idx - n + 1, idx do
  local v = redis.call('HMGET', KEYS[2] .. ':' .. i, 'total', 'fail')
  total = total + tonumber(v[1] or '0')
  fail = fail + tonumber(v[2] or '0')
end
if total >= tonumber(ARGV[4]) and fail >= tonumber(ARGV[5]) * total then
  local wait = tonumber(ARGV[6])
  redis.call('SET', KEYS[1], '1', 'PX', wait)
  for i = idx - n + 1, idx do redis.call('DEL', KEYS[2] .. ':' .. i) end
  return wait
end
return 0
";

/// The fleet breaker's state as one instance sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisCircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the fleet's open state expires.
    Open,
}

struct Shared {
    name: Arc<str>,
    backend: RedisBackend,
    state_key: String,
    bucket_key: String,
    bucket: Duration,
    buckets: u32,
    minimum_calls: u32,
    failure_rate: f64,
    wait: Duration,
    open_until: Mutex<Option<Instant>>,
    record: LuaScript,
}

impl Shared {
    fn open_until(&self) -> Option<Instant> {
        self.open_until.lock().ok().and_then(|g| *g).filter(|t| *t > Instant::now())
    }
    /// Opens this instance until `ms` from now, unless it already is open longer. Never
    /// closes: the open state only expires (there is no fleet-wide force-close), so a stale
    /// poll reply cannot close a breaker a fresher reply opened.
    fn set_open_for(&self, ms: i64) {
        if ms <= 0 {
            return;
        }
        if let Ok(mut g) = self.open_until.lock() {
            let until = deadline_after(Instant::now(), Duration::from_millis(ms as u64));
            *g = Some(g.map_or(until, |t| t.max(until)));
        }
    }
}

/// Builds a [`RedisCircuitBreakerLayer`].
#[derive(Debug)]
pub struct RedisCircuitBreakerBuilder {
    name: Arc<str>,
    backend: RedisBackend,
    window: Duration,
    buckets: u32,
    minimum_calls: u32,
    failure_rate: f64,
    wait: Duration,
    poll: Duration,
}

impl RedisCircuitBreakerBuilder {
    /// Opens when at least `minimum_calls` outcomes were seen by the fleet within the window
    /// and at least `rate` (above 0, at most 1) of them failed. Default 10 calls, 0.5.
    pub fn failure_rate(mut self, rate: f64, minimum_calls: u32) -> Self {
        self.failure_rate = rate;
        self.minimum_calls = minimum_calls;
        self
    }
    /// The sliding time window and its number of buckets (each bucket is one Redis hash).
    /// Default 10 s in 10 buckets.
    pub fn time_window(mut self, window: Duration, buckets: u32) -> Self {
        self.window = window;
        self.buckets = buckets;
        self
    }
    /// How long the fleet stays open. Default 5 s.
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
    /// How often each instance reads the fleet's state (the propagation delay of a transition
    /// made by another instance is at most this plus one round trip). Between 1 ms and one
    /// day; default 100 ms. Keep it well below `wait_in_open`: an open state shorter than
    /// the interval may end before another instance polls it, which then never opens.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }
    /// Validates and builds; starts the poller task (it ends when the last clone of the
    /// layer and its services is dropped).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a failure rate not above 0 and at most 1, `minimum_calls` 0,
    /// buckets not between 1 and 60 or shorter than 1 ms, a window, a wait in open or a poll
    /// interval beyond one day, or when called outside a tokio runtime.
    pub fn build(self) -> Result<RedisCircuitBreakerLayer, ConfigError> {
        palisade_core::config::ensure_ratio("failure_rate", self.failure_rate)?;
        // Resilience4j's threshold is in (0, 100]: with 0 the script's `fail >= 0 × total`
        // opened the fleet on successes alone.
        if self.failure_rate <= 0.0 {
            return Err(ConfigError::new("failure_rate", "must be above 0.0 (and at most 1.0)"));
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", "at least 1"));
        }
        if self.buckets == 0 || self.buckets > 60 {
            return Err(ConfigError::new("time_window.buckets", "between 1 and 60"));
        }
        let bucket = self.window / self.buckets;
        if bucket < Duration::from_millis(1) || self.window > Duration::from_secs(86_400) {
            return Err(ConfigError::new("time_window", "buckets of at least 1 ms, window at most a day"));
        }
        if self.wait < Duration::from_millis(1) || self.wait > Duration::from_secs(86_400) {
            return Err(ConfigError::new("wait_in_open", "between 1 ms and one day"));
        }
        // tokio's interval adds the period to its clock: past ~30 years the poller panicked.
        if self.poll < Duration::from_millis(1) || self.poll > Duration::from_secs(86_400) {
            return Err(ConfigError::new("poll_interval", "between 1 ms and one day"));
        }
        // The poller is spawned here: a clear error instead of tokio's panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "runtime",
                "build the shared circuit breaker inside a tokio runtime",
            ));
        }
        let tag = format!("{{{}}}", self.name);
        let shared = Arc::new(Shared {
            state_key: self.backend.key(&["breaker", &tag, "open"]),
            bucket_key: self.backend.key(&["breaker", &tag, "b"]),
            name: self.name,
            backend: self.backend,
            bucket,
            buckets: self.buckets,
            minimum_calls: self.minimum_calls,
            failure_rate: self.failure_rate,
            wait: self.wait,
            open_until: Mutex::new(None),
            record: LuaScript::new(RECORD_LUA),
        });
        tokio::spawn(poll_loop(Arc::downgrade(&shared), self.poll));
        Ok(RedisCircuitBreakerLayer { shared })
    }
}

async fn poll_loop(shared: Weak<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let key = s.state_key.clone();
        // Redis down: keep the last known state (it expires by itself).
        if let Ok(redis::Value::Int(ms)) = s
            .backend
            .run("breaker", move |mut conn| async move {
                redis::cmd("PTTL").arg(key).query_async(&mut conn).await
            })
            .await
        {
            s.set_open_for(ms);
        }
    }
}

/// A circuit breaker whose outcomes and open state live in Redis, shared by every instance
/// that builds one with the same name on the same Redis.
///
/// Every outcome is recorded with one script call sent from a spawned task (the caller does
/// not wait for it); the instance whose outcome opens the breaker is open at once, the others
/// when their poller next reads the state key.
///
/// Deviation from Resilience4j: there is no fleet-wide half-open state. After `wait_in_open`
/// the state key expires, the window starts empty and the breaker is closed on every instance
/// at once (each instance's local deadline comes from the key's remaining time): there is no
/// limit on trial calls, every instance sends its traffic, and the breaker opens again when
/// the fleet's first `minimum_calls` outcomes reach the failure rate — so up to
/// `minimum_calls` calls (plus the calls in flight while the script's answer travels back and
/// the other instances' next poll) go to a backend that is still down.
///
/// While Redis is down, each instance keeps its last known state (an open state expires on
/// its own) and outcomes are not counted, so the fleet's breaker cannot open: it fails open.
/// Each outcome that could not be counted is a fallback (`RedisEvent::Fallback` with `op`
/// `"breaker"` and policy `"fail_open"`, and the backend's `fallbacks` counter); stack a
/// local `palisade` circuit breaker inside this one to stay protected through a Redis outage.
#[derive(Clone)]
pub struct RedisCircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisCircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCircuitBreakerLayer").field("name", &self.shared.name).finish_non_exhaustive()
    }
}

impl RedisCircuitBreakerLayer {
    /// A builder for the shared breaker `name`.
    pub fn builder(name: impl Into<Arc<str>>, backend: RedisBackend) -> RedisCircuitBreakerBuilder {
        RedisCircuitBreakerBuilder {
            name: name.into(),
            backend,
            window: Duration::from_secs(10),
            buckets: 10,
            minimum_calls: 10,
            failure_rate: 0.5,
            wait: Duration::from_secs(5),
            poll: Duration::from_millis(100),
        }
    }

    /// The state as this instance sees it now.
    pub fn state(&self) -> RedisCircuitState {
        if self.shared.open_until().is_some() {
            RedisCircuitState::Open
        } else {
            RedisCircuitState::Closed
        }
    }

    /// Records one outcome and waits for Redis' answer (the service does the same without
    /// waiting). Returns the state after it.
    pub async fn record(&self, failed: bool) -> RedisCircuitState {
        record(&self.shared, failed).await;
        self.state()
    }
}

async fn record(s: &Arc<Shared>, failed: bool) {
    let keys = [s.state_key.clone(), s.bucket_key.clone()];
    let mut cmd = s.record.cmd(&keys);
    cmd.arg(u8::from(failed))
        .arg(s.bucket.as_millis() as u64)
        .arg(s.buckets)
        .arg(s.minimum_calls)
        .arg(s.failure_rate.to_string())
        .arg(s.wait.as_millis() as u64);
    let code = s.record.code();
    match s.backend.run("breaker", move |conn| LuaScript::run(code, cmd, conn)).await {
        Ok(redis::Value::Int(ms)) => s.set_open_for(ms),
        // The outcome was not counted by the fleet (Redis down, slow, or a malformed reply).
        _ => s.backend.fallback("breaker", "fail_open"),
    }
}

fleet_service! {
    /// The service built by [`RedisCircuitBreakerLayer`]. An `Err` from the inner service is
    /// a failure; an `Ok` a success.
    RedisCircuitBreakerLayer => RedisCircuitBreaker
}

impl<S, Req> Service<Req> for RedisCircuitBreaker<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(until) = self.shared.open_until() {
            let err =
                CircuitOpen::new(self.shared.name.clone(), until.saturating_duration_since(Instant::now()));
            return Box::pin(std::future::ready(Err(err.into())));
        }
        let fut = self.inner.call(req);
        let shared = self.shared.clone();
        Box::pin(async move {
            let out = fut.await.map_err(Into::into);
            let failed = out.is_err();
            tokio::spawn(async move { record(&shared, failed).await });
            out
        })
    }
}
