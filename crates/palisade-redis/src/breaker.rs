//! A circuit breaker shared by the fleet: outcomes counted in Redis, one open state for all.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::OnRedisDown;

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
    poll: Duration,
    open_until: Mutex<Option<Instant>>,
    record: LuaScript,
    on_down: OnRedisDown,
    /// The last record or poll failed: timed out, lost the connection, refused by the guard,
    /// or an error reply (cleared by the next one that succeeds).
    redis_down: AtomicBool,
    /// With [`OnRedisDown::Local`]: the outcomes Redis could not count.
    local: Option<Mutex<LocalWindow>>,
}

/// This instance's outcomes while Redis is down ([`OnRedisDown::Local`]): the fleet's time
/// window in at most 60 buckets, opened by `minimum_calls` scaled by the share.
struct LocalWindow {
    start: Instant,
    /// (bucket number since `start`, total, failed), one slot per bucket of the window.
    slots: Vec<(u64, u32, u32)>,
    minimum_calls: u32,
}

impl LocalWindow {
    /// Counts one outcome; whether the window now reaches the failure rate (then it starts
    /// empty again).
    fn record(&mut self, failed: bool, bucket: Duration, rate: f64) -> bool {
        let n = self.slots.len() as u64;
        let idx = (self.start.elapsed().as_nanos() / bucket.as_nanos().max(1)) as u64;
        let slot = &mut self.slots[(idx % n) as usize];
        if slot.0 != idx {
            *slot = (idx, 0, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.2 = slot.2.saturating_add(u32::from(failed));
        let (mut total, mut fail) = (0u64, 0u64);
        for &(i, t, f) in &self.slots {
            if i <= idx && idx - i < n {
                total += u64::from(t);
                fail += u64::from(f);
            }
        }
        let open = total >= u64::from(self.minimum_calls) && fail as f64 >= rate * total as f64;
        if open {
            self.slots.iter_mut().for_each(|s| *s = (u64::MAX, 0, 0));
        }
        open
    }
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
    on_down: OnRedisDown,
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
    /// What this instance decides while Redis is down or slow (a record or poll failed: no
    /// answer in time, the guard open, or an error reply such as a bucket key of the wrong
    /// type written by someone else). Default [`OnRedisDown::FailOpen`]: the last known
    /// state is kept (an open state expires on its own) and outcomes are not counted, so the
    /// breaker cannot open. [`OnRedisDown::FailClosed`]: every call is refused with
    /// [`CircuitOpen`] until Redis answers a poll again. [`OnRedisDown::Local`]`{ share }`:
    /// the outcomes Redis could not count go to a window of this instance (same window and
    /// failure rate, minimum calls `ceil(share × minimum_calls)`, at least 1), which opens
    /// this instance alone for `wait_in_open`. Each such decision is a
    /// `RedisEvent::Fallback` with `op` `"breaker"`.
    pub fn on_redis_down(mut self, policy: OnRedisDown) -> Self {
        self.on_down = policy;
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
        let local = match self.on_down {
            OnRedisDown::Local { share } => {
                palisade_core::config::ensure_ratio("on_redis_down.share", share)?;
                let minimum_calls = (f64::from(self.minimum_calls) * share).ceil().max(1.0) as u32;
                Some(Mutex::new(LocalWindow {
                    start: Instant::now(),
                    slots: vec![(u64::MAX, 0, 0); self.buckets as usize],
                    minimum_calls,
                }))
            }
            _ => None,
        };
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
            poll: self.poll,
            open_until: Mutex::new(None),
            record: LuaScript::new(RECORD_LUA),
            on_down: self.on_down,
            redis_down: AtomicBool::new(false),
            local,
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
        let polled = s
            .backend
            .run("breaker", move |mut conn| async move {
                redis::cmd("PTTL").arg(key).query_async(&mut conn).await
            })
            .await;
        // Redis down: the policy decides (by default the last known state is kept; it
        // expires by itself).
        if let Ok(redis::Value::Int(ms)) = polled {
            s.redis_down.store(false, Ordering::Release);
            s.set_open_for(ms);
        } else {
            s.redis_down.store(true, Ordering::Release);
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
/// While Redis is down the builder's [`on_redis_down`](RedisCircuitBreakerBuilder::on_redis_down)
/// policy decides. By default (`FailOpen`) each instance keeps its last known state (an open
/// state expires on its own) and outcomes are not counted, so the fleet's breaker cannot
/// open; `FailClosed` refuses every call until Redis answers again; `Local` counts this
/// instance's outcomes alone. Each outcome that could not be counted, and each call refused
/// by `FailClosed`, is a fallback (`RedisEvent::Fallback` with `op` `"breaker"` and the
/// policy, and the backend's `fallbacks` counter).
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
            on_down: OnRedisDown::FailOpen,
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
    let answer = s.backend.run("breaker", move |conn| LuaScript::run(code, cmd, conn)).await;
    if let Ok(redis::Value::Int(ms)) = answer {
        s.redis_down.store(false, Ordering::Release);
        s.set_open_for(ms);
        return;
    }
    // The outcome was not counted by the fleet (Redis down, slow, or a malformed reply).
    s.redis_down.store(true, Ordering::Release);
    match (&s.local, s.on_down) {
        (Some(local), _) => {
            s.backend.fallback("breaker", "local");
            if local.lock().is_ok_and(|mut w| w.record(failed, s.bucket, s.failure_rate)) {
                s.set_open_for(i64::try_from(s.wait.as_millis()).unwrap_or(i64::MAX));
            }
        }
        (None, OnRedisDown::FailClosed) => s.backend.fallback("breaker", "fail_closed"),
        (None, _) => s.backend.fallback("breaker", "fail_open"),
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
        if self.shared.on_down == OnRedisDown::FailClosed && self.shared.redis_down.load(Ordering::Acquire) {
            // Refused until a poll reaches Redis: retry after one poll interval.
            self.shared.backend.fallback("breaker", "fail_closed");
            let err = CircuitOpen::new(self.shared.name.clone(), self.shared.poll);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn window(buckets: usize, minimum_calls: u32) -> LocalWindow {
        LocalWindow { start: Instant::now(), slots: vec![(u64::MAX, 0, 0); buckets], minimum_calls }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_local_window_slides_and_starts_empty_after_opening() {
        let bucket = Duration::from_millis(100);
        let mut w = window(10, 2);
        assert!(!w.record(true, bucket, 0.5), "one call is below the minimum");
        // the first failure leaves the 1 s window
        tokio::time::advance(Duration::from_millis(1_050)).await;
        assert!(!w.record(true, bucket, 0.5), "the old failure still counted");
        assert!(!w.record(false, bucket, 0.6), "1 of 2 is below 0.6");
        assert!(w.record(true, bucket, 0.6), "2 of 3 reach 0.6");
        // opened: the window starts empty
        assert!(!w.record(true, bucket, 0.5));
        assert!(w.record(true, bucket, 0.5));
    }
}
