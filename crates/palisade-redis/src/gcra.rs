//! Distributed GCRA rate limiting: one atomic Lua script per decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::rejection::RateLimited;
use palisade_core::time::deadline_after;
use tokio::time::Instant;

use crate::backend::{LuaScript, RedisBackend};
use crate::error::CostExceedsCapacity;
use crate::OnRedisDown;

/// The GCRA script: one or more decisions, each atomic, in order.
///
/// Arguments, run-length encoded so that decisions sharing a quota (the common case) send
/// their quota once per call: `ARGV[1]` is the number of runs; each run is `count`, the number
/// of tiers `n`, tokens wanted, the least number of tokens accepted (== wanted in exact mode,
/// 1 … wanted when taking a batch), then per tier the emission interval in µs and the capacity
/// in tokens; the run's `count` decisions follow one another in `KEYS`, `n` keys each. Time
/// comes from Redis' `TIME` (once per call), so instances with skewed clocks agree. Every tier
/// is checked before any is written: a refusal by a later tier spends nothing in the earlier
/// ones. Returns per decision of an exact run (wanted == least) one integer: the tokens
/// remaining in the tightest tier when admitted (`>= 0`), or `-(retry_after_us) - 1` when
/// refused; per decision of another run two: the tokens granted (0 when refused), then that
/// integer. An admission then adds its new arrival time in each tier (µs, truncated): what
/// [`RedisRateLimiter::refund`] needs to give back no more than the debt still unpaid (see
/// [`REFUND_LUA`]).
///
/// **Expiry.** A key expires at the first whole second after its theoretical arrival time (at
/// most 1 s late), so Redis memory stays bounded. A write whose new arrival time is in the same
/// second as the value it replaces keeps the key's TTL (`KEEPTTL`): every writer keeps the
/// invariant "a key expires at the end of its value's second", so the TTL still covers the
/// new value, and Redis is spared the `PXAT` (half the cost of a `SET` inside a script).
/// Keys written by an older palisade (TTL = arrival time, not the end of its second) can
/// expire up to 1 s early while both versions share a Redis: during such a rollout a key may
/// be admitted up to 1 s of refill more than its quota.
///
/// Cost (Redis 7.0, `INFO commandstats`): ~1.3 µs of Lua per decision (its share of one
/// `MGET` of every key of the call, a `SET` and the arithmetic; a `GET` each cost ~0.07 µs
/// more) plus ~1.2 µs per call, against ~0.13 µs for an `INCR`: one call decides many keys
/// so that the round trip, the timeout and the guard breaker are paid once per call. A key
/// decided twice in one call reads what the call wrote for it before. A key under the
/// limiter's prefix that holds something else (another type, a value that is not a number,
/// or a number no arrival time can be: `nan`, `inf`, negative, past 2^53 µs) reads as a
/// fresh bucket and is overwritten: it spoils no other decision of the call. A whole
/// theoretical arrival time is written in hexadecimal (`0x…`, by `%x`):
/// Redis' own conversion of a Lua number (`%.17g`) costs ~0.1 µs more, and `tonumber` reads
/// hexadecimal without a decimal conversion (another ~0.1 µs). A fractional one (an emission
/// interval that is not a whole number of µs) is written as a Lua number, so its fraction is
/// kept; `tonumber` reads either. `x - x % 1` is `math.floor(x)` without a function call.
///
/// **Fractional intervals.** A Lua number near today's time in µs (~2^50.6) has a step of
/// 0.25 µs, so `tat + T × n` is rounded; a sum that rounded down is moved to the next number up
/// (and the interval, sent with 4 decimals, is rounded up), so an arrival time is never
/// behind the exact one: the limiter then admits at most the quota (at most ~0.25 µs of
/// refill per admission less).
pub(crate) const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor = math.floor
-- the next Lua number above x > 0: a sum that rounded down is rounded up instead
local function up(x)
  local _, e = math.frexp(x)
  return x + math.ldexp(1, e - 53)
end
-- Every key read at once: one MGET (per 1,000 keys, under Lua's stack limit) costs Redis
-- less than a GET each. `cur` holds what this call wrote since, for a key decided twice.
local pre
local nk = #KEYS
if nk <= 1000 then
  pre = redis.call('MGET', unpack(KEYS))
else
  pre = {}
  for i = 1, nk, 1000 do
    local j = i + 999
    if j > nk then j = nk end
    local vals = redis.call('MGET', unpack(KEYS, i, j))
    for m = 1, j - i + 1 do pre[i + m - 1] = vals[m] end
  end
end
local cur = {}
local out = {}
local o = 0
local a = 2
local k = 0
for _ = 1, tonumber(ARGV[1]) do
  local count = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  local want = tonumber(ARGV[a + 2])
  local least = tonumber(ARGV[a + 3])
  local exact = want == least
  a = a + 4
  if n == 1 then
    local T = tonumber(ARGV[a])
    local TB = T * tonumber(ARGV[a + 1])
    a = a + 2
    for _ = 1, count do
      k = k + 1
      local key = KEYS[k]
      local old = cur[key]
      if old == nil then
        old = tonumber(pre[k])
        -- no arrival time (nan, inf, past 2^53 us or negative): a fresh bucket
        if old and not (old >= 0 and old < 9007199254740992) then old = nil end
      end
      local tat = old or now
      if tat < now then tat = now end
      local grant = (TB - (tat - now)) / T + 1e-9
      grant = grant - grant % 1
      if grant > want then grant = want end
      if grant < least then
        local r = tat + T * least - TB - now
        if r < 0 then r = 0 end
        if not exact then
          o = o + 1
          out[o] = 0
        end
        o = o + 1
        out[o] = -math.ceil(r) - 1
      else
        local inc = T * grant
        local nt = tat + inc
        if nt - tat < inc then nt = up(nt) end
        local s = nt - nt % 1000000
        local v = nt
        if nt % 1 == 0 then v = string.format('0x%x', nt) end
        if old and old - old % 1000000 == s then
          redis.call('SET', key, v, 'KEEPTTL')
        else
          redis.call('SET', key, v, 'PXAT', (s + 1000000) / 1000)
        end
        cur[key] = nt
        if not exact then
          o = o + 1
          out[o] = grant
        end
        o = o + 1
        local left = (TB - (nt - now)) / T + 1e-9
        out[o] = left - left % 1
        -- the admission's arrival time (its slot's end), for an exact refund
        o = o + 1
        out[o] = nt
      end
    end
  else
    local Ts = {}
    local TBs = {}
    for i = 1, n do
      Ts[i] = tonumber(ARGV[a])
      TBs[i] = Ts[i] * tonumber(ARGV[a + 1])
      a = a + 2
    end
    local olds = {}
    local tats = {}
    local nts = {}
    for _ = 1, count do
      local grant = want
      for i = 1, n do
        local old = cur[KEYS[k + i]]
        if old == nil then
          old = tonumber(pre[k + i])
          if old and not (old >= 0 and old < 9007199254740992) then old = nil end
        end
        local tat = old or now
        if tat < now then tat = now end
        olds[i] = old or false
        tats[i] = tat
        local avail = floor((TBs[i] - (tat - now)) / Ts[i] + 1e-9)
        if avail < grant then grant = avail end
      end
      if grant < least then
        local retry = 0
        for i = 1, n do
          local r = tats[i] + Ts[i] * least - TBs[i] - now
          if r > retry then retry = r end
        end
        if not exact then
          o = o + 1
          out[o] = 0
        end
        o = o + 1
        out[o] = -math.ceil(retry) - 1
      else
        local remaining = -1
        for i = 1, n do
          local T = Ts[i]
          local inc = T * grant
          local nt = tats[i] + inc
          if nt - tats[i] < inc then nt = up(nt) end
          local s = floor(nt / 1000000)
          local old = olds[i]
          local v = nt
          if nt % 1 == 0 then v = string.format('0x%x', nt) end
          if old and floor(old / 1000000) == s then
            redis.call('SET', KEYS[k + i], v, 'KEEPTTL')
          else
            redis.call('SET', KEYS[k + i], v, 'PXAT', (s + 1) * 1000)
          end
          cur[KEYS[k + i]] = nt
          nts[i] = nt
          local left = floor((TBs[i] - (nt - now)) / T + 1e-9)
          if remaining < 0 or left < remaining then remaining = left end
        end
        if not exact then
          o = o + 1
          out[o] = grant
        end
        o = o + 1
        out[o] = remaining
        for i = 1, n do
          o = o + 1
          out[o] = nts[i]
        end
      end
      k = k + n
    end
  end
end
return out
";

/// Gives back what an admission that was never used still owes, in every tier: `KEYS` the
/// tier keys; `ARGV[1]` the tokens, then per tier the emission interval (µs) and the
/// admission's arrival time `adm` (µs, from the script's reply).
///
/// **Never more than the admission still owes.** Time repays an admission's slot, which ends
/// at its arrival time, and later admissions were built on the bucket as it was. So a tier
/// gets back `min(tokens × T, min(adm, tat) − now)`: nothing once the slot has passed (a
/// late refund gave the whole weight back before, and a second request passed beside the
/// one admitted after the slot). Exact for a refund made while no refund of an earlier
/// admission of the key came after this one's admission (the common case: a dropped
/// response future gives its admission back at once).
///
/// **Known limit.** A refund of an *earlier* admission, made after this one was admitted,
/// moves this one's slot earlier by what it gave back, and the stamp does not know: refunded
/// after its moved slot began, this admission gets back up to that much too much (10 a second,
/// burst 10: X(5) and Z(5) at 0, X refunded, Y(10) at 0.6 s, Z refunded: up to 4 more pass).
/// Only manual refunds long after their admission reach it. Exact accounting would need a
/// per-key record of the credits given back, read by every decision (one more key per tier
/// on the hot path), and it would then give too little back to refunds out of order, as the
/// in-memory limiter does; `tests/review_wave5d.rs` keeps the case (ignored).
///
/// A key back at or below `now` is deleted (a fresh bucket); else it expires at the end of
/// its new arrival time's second, as [`GCRA_LUA`] keeps it, and a whole arrival time is
/// written in hexadecimal, as there. A value that is no arrival time is left alone.
const REFUND_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
for i = 1, #KEYS do
  local key = KEYS[i]
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat and tat >= 0 and tat < 9007199254740992 and tat > now then
    local dec = tonumber(ARGV[2 * i]) * cost
    local edge = tonumber(ARGV[2 * i + 1])
    if tat < edge then edge = tat end
    local credit = edge - now
    if credit > dec then credit = dec end
    if credit > 0 then
      local new = tat - credit
      -- rounded down, it would give back more than the credit: the next number up
      if tat - new > credit then
        local _, e = math.frexp(new)
        new = new + math.ldexp(1, e - 53)
      end
      if new <= now then
        redis.call('DEL', key)
      else
        local v = new
        if new % 1 == 0 then v = string.format('0x%x', new) end
        if new - new % 1000000 == tat - tat % 1000000 then
          redis.call('SET', key, v, 'KEEPTTL')
        else
          redis.call('SET', key, v, 'PXAT', (new - new % 1000000 + 1000000) / 1000)
        end
      end
    end
  end
end
return 0
";

/// One tier of a quota: `limit` tokens per `period`, with a burst of `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    limit: u64,
    period: Duration,
    burst: u64,
}

impl Quota {
    /// `limit` tokens per `period`; the burst is `limit` (a full bucket may be spent at once).
    pub fn per(limit: u64, period: Duration) -> Self {
        Self { limit, period, burst: limit }
    }
    /// Sets the burst (the bucket's capacity).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }
    fn validate(&self, field: &str) -> Result<(), ConfigError> {
        if self.limit == 0 || self.burst == 0 {
            return Err(ConfigError::new(format!("{field}.limit"), "limit and burst must be at least 1"));
        }
        if self.period.is_zero() {
            return Err(ConfigError::new(format!("{field}.period"), "must be non-zero"));
        }
        if self.emission_us() < 1.0 {
            return Err(ConfigError::new(format!("{field}.period"), "more than one token per microsecond"));
        }
        if self.period > Duration::from_secs(86_400 * 365) || self.burst > 1 << 40 {
            return Err(ConfigError::new(
                format!("{field}.period"),
                "period above a year or burst above 2^40",
            ));
        }
        // The script's arrival times are Lua numbers (doubles) in µs: `now` (~2^50.6) plus a
        // full bucket must stay below 2^53 to be exact (and far below 2^63, past which the
        // script's `%x` and `PXAT` fail).
        if self.emission_us() * self.burst as f64 > MAX_BUCKET_US {
            return Err(ConfigError::new(
                format!("{field}.burst"),
                "period / limit × burst above 2^52 µs (~142 years): beyond a Lua number's precision",
            ));
        }
        Ok(())
    }
    fn emission_us(&self) -> f64 {
        self.period.as_micros() as f64 / self.limit as f64
    }
    /// This quota scaled by `share` (at least one token), for the local fallback.
    fn scaled(&self, share: f64) -> Self {
        let limit = ((self.limit as f64 * share).floor() as u64).max(1);
        let burst = ((self.burst as f64 * share).floor() as u64).max(1);
        Self { limit, period: self.period, burst }
    }
}

/// Where a [`Decision`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Redis' script decided.
    Redis,
    /// A block of tokens taken earlier from Redis (local batching).
    Batch,
    /// Redis was unavailable and the policy is fail open.
    FailOpen,
    /// Redis was unavailable and the policy is fail closed.
    FailClosed,
    /// Redis was unavailable and the local fallback limit decided.
    Local,
}

/// The answer to one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the call is admitted.
    pub allowed: bool,
    /// When refused: how long until the same request would be admitted (exact for
    /// [`Source::Redis`], assuming no one else spends tokens meanwhile).
    pub retry_after: Duration,
    /// Tokens left in the tightest tier after this decision (Redis decisions only, else 0).
    pub remaining: u64,
    /// Who decided.
    pub source: Source,
    /// Where a Redis admission left its slots (for [`RedisRateLimiter::refund`]).
    stamp: Stamp,
}

impl Decision {
    /// `Ok(())` when admitted, else the palisade rejection [`RateLimited`].
    pub fn into_result(self, name: &str) -> Result<(), RateLimited> {
        if self.allowed {
            Ok(())
        } else {
            Err(RateLimited::new(name, self.retry_after))
        }
    }
}

struct Block {
    tokens: u64,
    expires: Instant,
}

struct Batching {
    size: u64,
    hold: Duration,
    max_keys: usize,
    blocks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Block>>>>,
}

struct Shared {
    backend: RedisBackend,
    name: Arc<str>,
    tiers: Vec<Quota>,
    on_down: OnRedisDown,
    /// The configured tiers as script arguments, formatted once.
    args: Arc<[TierArg]>,
    /// `<backend prefix>:<name>:`, the start of every key of this limiter.
    prefix: Arc<str>,
    script: LuaScript,
    refund: LuaScript,
    coalesce: Option<tokio::sync::mpsc::Sender<Job>>,
    /// Decisions of this limiter waiting for Redis; a decision that finds none goes straight
    /// to Redis (a lone caller skips the dispatcher's hop).
    outstanding: std::sync::atomic::AtomicUsize,
    local: LocalGcra,
    batching: Option<Batching>,
}

/// A rate limiter whose state lives in Redis: every instance built with the same name and
/// backend URL shares one quota per key.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use palisade_redis::{OnRedisDown, Quota, RedisBackend, RedisRateLimiter};
///
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").build()?;
/// let limiter = RedisRateLimiter::builder("api", backend)
///     .tier(Quota::per(100, Duration::from_secs(1)))
///     .tier(Quota::per(1_000, Duration::from_secs(60)))
///     .on_redis_down(OnRedisDown::Local { share: 0.2 })
///     .build()?;
/// let decision = limiter.check("client-42", 1).await?;
/// decision.into_result("api")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("name", &self.shared.name)
            .field("tiers", &self.shared.tiers)
            .finish()
    }
}

/// Builds a [`RedisRateLimiter`].
#[derive(Debug)]
pub struct RedisRateLimiterBuilder {
    name: Arc<str>,
    backend: RedisBackend,
    tiers: Vec<Quota>,
    on_down: OnRedisDown,
    batch: Option<(u64, Duration)>,
    coalesce: Option<usize>,
    max_keys: usize,
}

impl RedisRateLimiterBuilder {
    /// Adds a tier; a call is admitted only when every tier admits it.
    pub fn tier(mut self, quota: Quota) -> Self {
        self.tiers.push(quota);
        self
    }
    /// What to decide when Redis is slow or down. Default [`OnRedisDown::FailClosed`].
    pub fn on_redis_down(mut self, policy: OnRedisDown) -> Self {
        self.on_down = policy;
        self
    }
    /// Local batching: take up to `size` tokens per round trip and spend them locally for at
    /// most `hold`. Only weight-1… checks are served from a block.
    ///
    /// **Overshoot bound.** Every token spent was paid for in Redis, so over any window the
    /// fleet admits at most what the quota admits plus the tokens held locally at the window's
    /// start: at most `instances × (size − 1)` per key (one block per key per instance, taken
    /// under a per-key lock). Choose `size ≤ 1 % × burst / instances` for ≤ 1 % overshoot.
    /// Tokens still held after `hold` are dropped (the fleet then admits less, never more).
    pub fn batch(mut self, size: u64, hold: Duration) -> Self {
        self.batch = Some((size, hold));
        self
    }
    /// Coalescing: decisions waiting while another script call is in flight are sent
    /// together, up to `max` per script call (the script decides each in turn, atomically
    /// and in arrival order, so the limit stays exact). Decisions queue while a call runs; a
    /// second call starts with 8 waiting (Redis runs one while this process answers the
    /// other), a third and more (at most 8) only with `max`. With 64 concurrent callers this
    /// costs a few round trips instead of 64 (and one timeout and guard-breaker pass per
    /// script call). A decision that finds no other
    /// decision of the limiter waiting goes straight to Redis (a lone caller pays no hop).
    /// A caller waits at most the backend's timeout in all (queue and script call), then the
    /// down policy decides; a decision whose caller is gone before its call is sent is not sent.
    /// `0` or `1` turns it off (one script call per decision).
    ///
    /// Default 128 when the limiter is built inside a tokio runtime (the dispatcher is a task
    /// on it), else off. At most 1,024.
    pub fn coalesce(mut self, max: usize) -> Self {
        self.coalesce = Some(max);
        self
    }
    /// The most keys held in local state (blocks, local fallback). Default 10,000; when full,
    /// new keys go to Redis unbatched and, under the local fallback, are refused.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }
    /// Validates and builds.
    pub fn build(self) -> Result<RedisRateLimiter, ConfigError> {
        if self.tiers.is_empty() {
            return Err(ConfigError::new("tiers", "at least one tier"));
        }
        if self.tiers.len() > MAX_TIERS {
            return Err(ConfigError::new("tiers", "at most 8 tiers"));
        }
        for (i, t) in self.tiers.iter().enumerate() {
            t.validate(&format!("tiers[{i}]"))?;
        }
        if let OnRedisDown::Local { share } = self.on_down {
            palisade_core::config::ensure_ratio("on_redis_down.share", share)?;
        }
        if self.max_keys == 0 || self.max_keys > 10_000_000 {
            return Err(ConfigError::new("max_keys", "between 1 and 10,000,000"));
        }
        let batching = match self.batch {
            None => None,
            Some((size, hold)) => {
                if size < 2 || self.tiers.iter().any(|t| size > t.burst) {
                    return Err(ConfigError::new("batch.size", "between 2 and the smallest burst"));
                }
                palisade_core::config::ensure_nonzero_duration("batch.hold", hold)?;
                Some(Batching { size, hold, max_keys: self.max_keys, blocks: Mutex::new(HashMap::new()) })
            }
        };
        let share = match self.on_down {
            OnRedisDown::Local { share } => share,
            _ => 1.0,
        };
        let local_tiers = self.tiers.iter().map(|t| t.scaled(share)).collect();
        let (max, explicit) = match self.coalesce {
            Some(max) => (max, true),
            None => (DEFAULT_COALESCE, false),
        };
        if max > 1_024 {
            return Err(ConfigError::new("coalesce", "at most 1,024 decisions per script call"));
        }
        let prefix: Arc<str> = self.backend.key(&[&self.name, ""]).into();
        let coalesce = if max > 1 {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(4_096);
                    handle.spawn(dispatch(
                        rx,
                        self.backend.clone(),
                        LuaScript::new(GCRA_LUA),
                        prefix.clone(),
                        max,
                    ));
                    Some(tx)
                }
                Err(_) if explicit => {
                    return Err(ConfigError::new("coalesce", "build inside a tokio runtime"));
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let args = tier_args(&self.tiers);
        Ok(RedisRateLimiter {
            shared: Arc::new(Shared {
                backend: self.backend,
                name: self.name,
                tiers: self.tiers,
                on_down: self.on_down,
                args,
                prefix,
                script: LuaScript::new(GCRA_LUA),
                refund: LuaScript::new(REFUND_LUA),
                coalesce,
                outstanding: std::sync::atomic::AtomicUsize::new(0),
                local: LocalGcra::new(local_tiers, self.max_keys),
                batching,
            }),
        })
    }
}

impl RedisRateLimiter {
    /// A builder for the limiter `name` (the name is part of every Redis key: instances
    /// share a quota when they share the name and the Redis).
    pub fn builder(name: impl Into<Arc<str>>, backend: RedisBackend) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            name: name.into(),
            backend,
            tiers: Vec::new(),
            on_down: OnRedisDown::FailClosed,
            batch: None,
            coalesce: None,
            max_keys: 10_000,
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Asks for `weight` tokens of `key` under the configured tiers.
    ///
    /// Dropping this future after its script call was sent keeps an admission made for it
    /// spent (the fleet admits less, never more); before it was sent, nothing is spent. For an
    /// admission given back when the caller goes away, use
    /// [`check_owned`](Self::check_owned).
    pub async fn check(&self, key: &str, weight: u64) -> Result<Decision, CostExceedsCapacity> {
        let s = &self.shared;
        self.check_in(key, weight, &s.tiers).await
    }

    /// Asks for `weight` tokens of `key` under the tiers `quotas` (per-key quotas; batching
    /// and the local fallback use the configured tiers' shape).
    ///
    /// A quota that [`build`](RedisRateLimiterBuilder::build) would reject (a zero limit,
    /// burst or period, more than one token per µs, a bucket beyond 2^52 µs) can never admit:
    /// it is refused with [`CostExceedsCapacity`] naming the tier, with a capacity of 0; so
    /// is a list of no tiers or more than 8.
    pub async fn check_with(
        &self,
        key: &str,
        weight: u64,
        quotas: &[Quota],
    ) -> Result<Decision, CostExceedsCapacity> {
        self.check_in(key, weight, quotas).await
    }

    /// Gives back `weight` tokens of `decision`, an admission of `key` that was never used:
    /// to the local block for a [`Source::Batch`] decision, to Redis for a [`Source::Redis`]
    /// one (in the admission's own tiers, configured or given to
    /// [`check_with`](Self::check_with), and at most the weight it was admitted with).
    /// Decisions of the down policy are not refunded.
    ///
    /// A Redis refund gives back at most the debt the admission still owes: nothing once its
    /// slot has passed (time repaid it, and later admissions were built on it): a tier gets
    /// back `min(weight × T, min(arrival, tat) − now)`, where `T` is the tier's emission
    /// interval the admission was decided with and `arrival` the arrival time Redis stamped
    /// on it. Refund an admission once, soon after it (a `Decision` is `Copy`: given back
    /// twice, it is credited twice); a refund made after a refund of an earlier admission of
    /// the same key, once its slot began, can give back more than it owes (see the script's
    /// known limit in the source, `REFUND_LUA`).
    pub async fn refund(&self, key: &str, weight: u64, decision: &Decision) {
        let s = &self.shared;
        if !decision.allowed {
            return;
        }
        match decision.source {
            Source::Batch => {
                if let Some(block) = s.batching.as_ref().and_then(|b| b.block(key)) {
                    let mut block = block.lock().await;
                    block.tokens = block.tokens.saturating_add(weight);
                }
            }
            Source::Redis => {
                // the admission's own tiers and intervals, at most its own weight
                let stamp = &decision.stamp;
                let n = usize::from(stamp.tiers).min(MAX_TIERS);
                if n == 0 {
                    return;
                }
                let keys = self.keys(key, n);
                let mut cmd = s.refund.cmd(&keys);
                cmd.arg(weight.min(stamp.weight));
                for (&q, &tat) in stamp.emission.iter().zip(&stamp.tats).take(n) {
                    cmd.arg(&*format_emission(q)).arg(tat);
                }
                let code = s.refund.code();
                let _ = s.backend.run("gcra_refund", move |conn| LuaScript::run(code, cmd, conn)).await;
            }
            _ => {}
        }
    }

    /// [`check`](Self::check) on a spawned task: when the returned future is dropped before
    /// the answer arrives, an admission made for it is refunded (the tower contract for a
    /// response future dropped while waiting). Must be called inside a tokio runtime.
    ///
    /// A Redis call that times out after Redis ran the script cannot be told apart from one
    /// that never arrived: its token stays spent (the fleet admits less, never more).
    pub fn check_owned(
        &self,
        key: String,
        weight: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Decision, CostExceedsCapacity>> + Send>>
    {
        let this = self.clone();
        let key2 = key.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let decision = this.check(&key, weight).await;
            if let Err(Ok(d)) = tx.send(decision) {
                if d.allowed {
                    this.refund(&key, weight, &d).await;
                }
            }
        });
        Box::pin(OwnedCheck { rx: Some(rx), refund: Some((self.clone(), key2, weight)) })
    }

    fn keys(&self, key: &str, tiers: usize) -> Vec<String> {
        let mut buf = Vec::new();
        (0..tiers)
            .map(|i| {
                tier_key(&mut buf, &self.shared.prefix, key, i);
                String::from_utf8_lossy(&buf).into_owned()
            })
            .collect()
    }

    async fn check_in(
        &self,
        key: &str,
        weight: u64,
        tiers: &[Quota],
    ) -> Result<Decision, CostExceedsCapacity> {
        let configured = std::ptr::eq(tiers, self.shared.tiers.as_slice());
        // 1 to 8 tiers, as `build` takes: a tier's key carries one digit (a 10th tier would
        // share the 1st one's key)
        if !configured && (tiers.is_empty() || tiers.len() > MAX_TIERS) {
            return Err(CostExceedsCapacity::new(
                self.shared.name.clone(),
                "tiers",
                u32::try_from(weight).unwrap_or(u32::MAX),
                0,
            ));
        }
        for (tier, q) in tiers.iter().enumerate() {
            // a per-key quota that `build` would reject can never admit (its arithmetic in
            // the script is NaN or inexact, and a NaN write fails every decision of the call)
            if !configured && q.validate("").is_err() {
                return Err(CostExceedsCapacity::new(
                    self.shared.name.clone(),
                    format!("tiers[{tier}]"),
                    u32::try_from(weight).unwrap_or(u32::MAX),
                    0,
                ));
            }
            if weight > q.burst || weight == 0 {
                return Err(CostExceedsCapacity::new(
                    self.shared.name.clone(),
                    format!("tiers[{tier}]"),
                    u32::try_from(weight).unwrap_or(u32::MAX),
                    u32::try_from(q.burst).unwrap_or(u32::MAX),
                ));
            }
        }
        let s = &self.shared;
        if let Some(b) = &s.batching {
            if std::ptr::eq(tiers, s.tiers.as_slice()) {
                if let Some(block) = b.block(key) {
                    // served from the block without a timer when its lock is free
                    if let Ok(mut held) = block.try_lock() {
                        if held.expires > Instant::now() && held.tokens >= weight {
                            held.tokens -= weight;
                            return Ok(Decision {
                                allowed: true,
                                retry_after: Duration::ZERO,
                                remaining: held.tokens,
                                source: Source::Batch,
                                stamp: Stamp::default(),
                            });
                        }
                    }
                    // The lock and the script call in one backend timeout: callers of one key
                    // take turns on its block, and behind a stalled Redis the n-th would else
                    // wait n timeouts.
                    let batched = async {
                        let mut block = block.lock().await;
                        let now = Instant::now();
                        if block.expires > now && block.tokens >= weight {
                            block.tokens -= weight;
                            return Some(Decision {
                                allowed: true,
                                retry_after: Duration::ZERO,
                                remaining: block.tokens,
                                source: Source::Batch,
                                stamp: Stamp::default(),
                            });
                        }
                        let want = b.size.max(weight);
                        Some(match self.eval(key, tiers, want, weight).await? {
                            (granted, _, remaining, stamp) if granted >= weight => {
                                block.tokens = granted - weight;
                                block.expires = deadline_after(Instant::now(), b.hold);
                                Decision {
                                    allowed: true,
                                    retry_after: Duration::ZERO,
                                    remaining,
                                    source: Source::Redis,
                                    stamp,
                                }
                            }
                            (_, retry, _, _) => {
                                block.tokens = 0;
                                Decision {
                                    allowed: false,
                                    retry_after: retry,
                                    remaining: 0,
                                    source: Source::Redis,
                                    stamp: Stamp::default(),
                                }
                            }
                        })
                    };
                    return Ok(match tokio::time::timeout(s.backend.timeout(), batched).await {
                        Ok(Some(d)) => d,
                        _ => self.fallback(key, weight),
                    });
                }
            }
        }
        match self.eval(key, tiers, weight, weight).await {
            Some((granted, retry, remaining, stamp)) => Ok(Decision {
                allowed: granted >= weight,
                retry_after: if granted >= weight { Duration::ZERO } else { retry },
                remaining,
                source: Source::Redis,
                stamp,
            }),
            None => Ok(self.fallback(key, weight)),
        }
    }

    /// One script call: `Some((granted, retry_after, remaining))`, `None` when Redis failed.
    async fn eval(&self, key: &str, tiers: &[Quota], want: u64, least: u64) -> Answer {
        let s = &self.shared;
        // The configured tiers' arguments were formatted at build; per-key quotas now.
        let args = if std::ptr::eq(tiers, s.tiers.as_slice()) { s.args.clone() } else { tier_args(tiers) };
        let outstanding = Outstanding::enter(&s.outstanding);
        if let (Some(tx), false) = (&s.coalesce, outstanding.alone) {
            // The caller's wait (queue and script call) is bounded by the backend timeout, as
            // a direct call is: behind calls in flight to a stalled Redis it would else wait
            // for one of them to time out, then for its own. A decision abandoned here is not
            // sent (the dispatcher drops decisions whose caller is gone); one already sent
            // keeps its token (the fleet admits less, never more).
            let (otx, orx) = tokio::sync::oneshot::channel();
            let job = Job { key: key.to_owned(), args, want, least, tx: otx };
            let wait = async move {
                tx.send(job).await.ok()?;
                orx.await.ok()?
            };
            return tokio::time::timeout(s.backend.timeout(), wait).await.ok()?;
        }
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(s.script.sha()).arg(args.len());
        let mut buf = Vec::with_capacity(s.prefix.len() + key.len() + 4);
        for i in 0..args.len() {
            tier_key(&mut buf, &s.prefix, key, i);
            cmd.arg(&buf[..]);
        }
        // one run of one decision
        cmd.arg(1).arg(1).arg(args.len()).arg(want).arg(least);
        for a in args.iter() {
            cmd.arg(&*a.emission).arg(a.burst);
        }
        let code = s.script.code();
        let result = s.backend.run("gcra", move |conn| LuaScript::run(code, cmd, conn)).await.ok()?;
        let redis::Value::Array(values) = result else { return None };
        let mut values = values.iter();
        let answer = decode(&mut values, want, least, &args);
        if values.next().is_some() {
            return None;
        }
        answer
    }

    fn fallback(&self, key: &str, weight: u64) -> Decision {
        let s = &self.shared;
        let backend_wait = s.backend.timeout();
        match s.on_down {
            OnRedisDown::FailOpen => {
                s.backend.fallback("gcra", "fail_open");
                Decision {
                    allowed: true,
                    retry_after: Duration::ZERO,
                    remaining: 0,
                    source: Source::FailOpen,
                    stamp: Stamp::default(),
                }
            }
            OnRedisDown::FailClosed => {
                s.backend.fallback("gcra", "fail_closed");
                Decision {
                    allowed: false,
                    retry_after: backend_wait,
                    remaining: 0,
                    source: Source::FailClosed,
                    stamp: Stamp::default(),
                }
            }
            OnRedisDown::Local { .. } => {
                s.backend.fallback("gcra", "local");
                let (allowed, retry_after) = s.local.check(key, weight);
                Decision {
                    allowed,
                    retry_after,
                    remaining: 0,
                    source: Source::Local,
                    stamp: Stamp::default(),
                }
            }
        }
    }
}

impl Batching {
    fn block(&self, key: &str) -> Option<Arc<tokio::sync::Mutex<Block>>> {
        let mut map = self.blocks.lock().ok()?;
        if let Some(b) = map.get(key) {
            return Some(b.clone());
        }
        if map.len() >= self.max_keys {
            let now = Instant::now();
            map.retain(|_, b| b.try_lock().map_or(true, |b| b.expires > now));
            if map.len() >= self.max_keys {
                return None;
            }
        }
        let b = Arc::new(tokio::sync::Mutex::new(Block { tokens: 0, expires: Instant::now() }));
        map.insert(key.to_owned(), b.clone());
        Some(b)
    }
}

/// One decision's answer from Redis: `(granted, retry_after, remaining, stamp)`; `None` when
/// Redis failed or the reply is malformed.
type Answer = Option<(u64, Duration, u64, Stamp)>;

/// Where an admission left its slots in Redis, for [`RedisRateLimiter::refund`]: the new
/// arrival time in each tier (µs, truncated), and the admission's own tiers (their number
/// and emission intervals, in units of 10⁻⁴ µs) and weight: a refund gives back the slots
/// the admission took, whatever tiers the refunding limiter is configured with (a
/// [`check_with`](RedisRateLimiter::check_with) admission under a faster quota than the
/// configured one was given back `weight × T` of the configured, slower tier: more than it
/// took). All zero for a decision not made by the script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    tats: [u64; MAX_TIERS],
    emission: [u64; MAX_TIERS],
    tiers: u8,
    weight: u64,
}

/// Counts a decision in [`Shared::outstanding`] until it is answered or dropped (only the
/// choice between the direct path and the dispatcher depends on it, never a decision).
struct Outstanding<'a> {
    count: &'a std::sync::atomic::AtomicUsize,
    /// No other decision was waiting when this one arrived.
    alone: bool,
}

impl<'a> Outstanding<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        use std::sync::atomic::Ordering;
        let alone = count.fetch_add(1, Ordering::AcqRel) == 0;
        Self { count, alone }
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The largest bucket (emission interval × burst) in µs, 2^52 (~142 years): see
/// [`Quota::validate`].
const MAX_BUCKET_US: f64 = 4_503_599_627_370_496.0;

/// The most tiers of a limiter or of a per-key quota list.
const MAX_TIERS: usize = 8;

/// The default [`RedisRateLimiterBuilder::coalesce`].
const DEFAULT_COALESCE: usize = 128;

/// One tier's script arguments: the emission interval in µs (formatted) and the capacity.
#[derive(PartialEq)]
struct TierArg {
    emission: Box<str>,
    /// The same interval in units of 10⁻⁴ µs (kept in a [`Stamp`] for a refund).
    emission_q: u64,
    burst: u64,
}

fn tier_args(tiers: &[Quota]) -> Arc<[TierArg]> {
    tiers
        .iter()
        // rounded up, never down: a shorter interval would refill faster than the quota
        .map(|q| {
            let emission_q = (q.emission_us() * 1e4).ceil() as u64;
            TierArg { emission: format_emission(emission_q), emission_q, burst: q.burst }
        })
        .collect()
}

/// An emission interval in units of 10⁻⁴ µs as the scripts read it (µs with 4 decimals).
fn format_emission(q: u64) -> Box<str> {
    format!("{}.{:04}", q / 10_000, q % 10_000).into()
}

/// One decision waiting for the coalescing dispatcher.
struct Job {
    /// The caller's key (without the prefix and tier).
    key: String,
    args: Arc<[TierArg]>,
    want: u64,
    least: u64,
    tx: tokio::sync::oneshot::Sender<Answer>,
}

impl Job {
    /// Whether `other` can share this decision's run (same tiers, weight and least).
    fn same_run(&self, other: &Job) -> bool {
        self.want == other.want
            && self.least == other.least
            && (Arc::ptr_eq(&self.args, &other.args) || self.args == other.args)
    }
}

/// Decisions worth a script call of their own while another call runs (see [`dispatch`]):
/// with fewer, the per-call cost (a round trip, Redis' `EVALSHA` and socket work, ~10 µs)
/// outweighs keeping Redis and this process busy at the same time. With 16, 16 callers
/// formed one cohort and Redis and this process took turns (0.51–0.56× the naive `INCR`
/// with a 1-worker client runtime); with 8 they form two cohorts of 8 in turn (0.77–0.80×),
/// and 64 callers still form two of ~32 (`benches/redis.rs`, old and new binaries taking
/// turns on a quiet machine).
const OVERLAP: usize = 8;

/// Script calls of the coalescing dispatcher in flight at once. Large calls cost Redis and
/// this process the least per decision (with 64 callers on a 2-core machine, calls of ~34
/// decisions cost ~1.1 µs here and ~1.8 µs in Redis per decision, calls of ~7 ~2.4 and
/// ~2.5 µs), so decisions queue up while a call runs: a second call starts when [`OVERLAP`]
/// decisions wait (Redis works on one call while this process answers the other), a further
/// one only with a full call (`max` decisions), so that many callers behind a slow link are
/// not held to `max` decisions per round trip.
///
/// Measured with 64 callers (`benches/redis.rs`): one cohort of 64 per call let Redis and this
/// process take turns (~300k decisions/s, ~1 core busy in all); two cohorts of ~32 in turn
/// keep both busy (~400k/s).
const MAX_IN_FLIGHT: usize = 8;

/// `<prefix>{<key>}:<tier>` into `buf`: `{key}` is a hash tag, so every tier of a key lives in
/// one cluster slot.
fn tier_key(buf: &mut Vec<u8>, prefix: &str, key: &str, tier: usize) {
    buf.clear();
    buf.extend_from_slice(prefix.as_bytes());
    buf.push(b'{');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"}:");
    // at most 8 tiers: one digit
    buf.push(b'0' + (tier % 10) as u8);
}

/// One decision's answer from the script's reply (see [`GCRA_LUA`]): one integer for an
/// exact decision (`want == least`), two otherwise, then an admission's arrival time in each
/// of its `tiers`. `None` when the reply is malformed.
fn decode(
    values: &mut std::slice::Iter<'_, redis::Value>,
    want: u64,
    least: u64,
    args: &[TierArg],
) -> Answer {
    let exact = want == least;
    let mut int = || match values.next() {
        Some(redis::Value::Int(v)) => Some(*v),
        _ => None,
    };
    let granted = if exact { None } else { Some(int()?) };
    let v = int()?;
    Some(if v >= 0 {
        let mut stamp = Stamp { weight: least, ..Stamp::default() };
        for (i, a) in args.iter().take(MAX_TIERS).enumerate() {
            stamp.tats[i] = u64::try_from(int()?).unwrap_or(0);
            stamp.emission[i] = a.emission_q;
            stamp.tiers += 1;
        }
        (granted.map_or(want, |g| g.max(0) as u64), Duration::ZERO, v as u64, stamp)
    } else {
        (0, Duration::from_micros((-(v + 1)) as u64), 0, Stamp::default())
    })
}

/// A script call of the dispatcher and the decisions it carries.
struct InFlight {
    call: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<redis::Value, crate::BackendError>> + Send>,
    >,
    jobs: Vec<Job>,
}

/// Starts one script call for `jobs` (in order; runs of consecutive decisions with the same
/// quota and weight send their arguments once).
fn start_call(
    backend: &RedisBackend,
    script: &LuaScript,
    prefix: &str,
    jobs: Vec<Job>,
    buf: &mut Vec<u8>,
) -> InFlight {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.sha()).arg(jobs.iter().map(|j| j.args.len()).sum::<usize>());
    for j in &jobs {
        for i in 0..j.args.len() {
            tier_key(buf, prefix, &j.key, i);
            cmd.arg(&buf[..]);
        }
    }
    let mut runs: Vec<(usize, &Job)> = Vec::new();
    for j in &jobs {
        match runs.last_mut() {
            Some((count, r)) if r.same_run(j) => *count += 1,
            _ => runs.push((1, j)),
        }
    }
    cmd.arg(runs.len());
    for (count, j) in &runs {
        cmd.arg(*count).arg(j.args.len()).arg(j.want).arg(j.least);
        for a in j.args.iter() {
            cmd.arg(&*a.emission).arg(a.burst);
        }
    }
    drop(runs);
    let code = script.code();
    InFlight { call: backend.run("gcra", move |conn| LuaScript::run(code, cmd, conn)), jobs }
}

/// Hands each decision of a finished call its answer (`None` for all when the call failed or
/// the reply is malformed: the down policy decides).
fn answer(jobs: Vec<Job>, result: Result<redis::Value, crate::BackendError>) {
    let values = match result {
        Ok(redis::Value::Array(values)) => values,
        _ => Vec::new(),
    };
    let mut it = values.iter();
    let answers: Vec<Answer> = jobs.iter().map(|j| decode(&mut it, j.want, j.least, &j.args)).collect();
    let ok = it.next().is_none() && answers.iter().all(Option::is_some);
    for (job, a) in jobs.into_iter().zip(answers) {
        let _ = job.tx.send(if ok { a } else { None });
    }
}

/// The coalescing dispatcher: keeps a script call running with the decisions that arrived
/// while the previous one ran (up to `max`; a second call with [`OVERLAP`] decisions, up to
/// [`MAX_IN_FLIGHT`] with full ones). It polls the calls itself (no task per call).
///
/// - When a call finishes and at least [`OVERLAP`] decisions wait, it sends them before
///   answering the finished call; with fewer it answers first and yields once, so that those
///   callers' next decisions join the next call (fewer, larger calls).
/// - From idle with at least `2 × OVERLAP` decisions waiting it sends half, yields (the
///   connection writes that call alone, so Redis answers it before it reads the next: Redis
///   answers all the commands of one read together), then the other half. The two halves then
///   take turns: Redis runs one while this process answers the other and gathers its next
///   decisions.
///
/// Ends when the limiter (every sender) is dropped and nothing is in flight.
async fn dispatch(
    mut rx: tokio::sync::mpsc::Receiver<Job>,
    backend: RedisBackend,
    script: LuaScript,
    prefix: Arc<str>,
    max: usize,
) {
    use std::task::Poll;
    let mut queue: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    let mut slots: [Option<InFlight>; MAX_IN_FLIGHT] = std::array::from_fn(|_| None);
    let mut closed = false;
    let mut buf = Vec::new();
    std::future::poll_fn(|cx| {
        // rounds of work before yielding to the other tasks of the runtime
        for _ in 0..16 {
            let mut finished = Vec::new();
            for slot in &mut slots {
                if let Some(f) = slot {
                    if let Poll::Ready(result) = f.call.as_mut().poll(cx) {
                        if let Some(f) = slot.take() {
                            finished.push((f.jobs, result));
                        }
                    }
                }
            }
            while !closed && queue.len() < max {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(job)) => queue.push_back(job),
                    Poll::Ready(None) => closed = true,
                    Poll::Pending => break,
                }
            }
            // Right after a call: send the next one before answering only when enough
            // decisions wait for a call that is worth it; else answer first and yield, so
            // that the callers just answered join the next call.
            let may_start = finished.is_empty() || queue.len() >= OVERLAP.min(max);
            let mut started = false;
            let mut busy = slots.iter().filter(|f| f.is_some()).count();
            for slot in &mut slots {
                // the first call takes what is waiting, a second one `OVERLAP` decisions,
                // a further one only a full call
                let ready = match busy {
                    0 => !queue.is_empty(),
                    1 => queue.len() >= OVERLAP.min(max),
                    _ => queue.len() >= max,
                };
                if may_start && slot.is_none() && ready {
                    // callers gone (dropped, or timed out waiting) are not decided: their
                    // tokens would be spent for no one
                    queue.retain(|j| !j.tx.is_closed());
                    if queue.is_empty() {
                        break;
                    }
                    // from idle with many waiting: two calls of half each (see above)
                    let overlap = OVERLAP.min(max);
                    let split = busy == 0 && queue.len() >= 2 * overlap;
                    let take = if split { queue.len() / 2 } else { queue.len() };
                    let jobs: Vec<Job> = queue.drain(..take.min(max)).collect();
                    let mut f = start_call(&backend, &script, &prefix, jobs, &mut buf);
                    // polled at once: the command goes to the connection now
                    match f.call.as_mut().poll(cx) {
                        Poll::Ready(result) => finished.push((f.jobs, result)),
                        Poll::Pending => {
                            *slot = Some(f);
                            busy += 1;
                        }
                    }
                    started = true;
                    if split {
                        // the other half after a yield: the connection writes this call
                        // first, so Redis answers it before it reads the next one
                        for (jobs, result) in finished {
                            answer(jobs, result);
                        }
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            }
            let answered = !finished.is_empty();
            for (jobs, result) in finished {
                answer(jobs, result);
            }
            if closed && queue.is_empty() && slots.iter().all(Option::is_none) {
                return Poll::Ready(());
            }
            if answered && !started {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !started && !answered {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// The future of [`RedisRateLimiter::check_owned`]: dropped after the answer arrived but
/// before it was read, it refunds an admission itself (the spawned task refunds when the
/// answer could not be delivered at all).
struct OwnedCheck {
    rx: Option<tokio::sync::oneshot::Receiver<Result<Decision, CostExceedsCapacity>>>,
    refund: Option<(RedisRateLimiter, String, u64)>,
}

impl std::future::Future for OwnedCheck {
    type Output = Result<Decision, CostExceedsCapacity>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(rx) = self.rx.as_mut() else {
            return std::task::Poll::Ready(Ok(Decision {
                allowed: false,
                retry_after: Duration::ZERO,
                remaining: 0,
                source: Source::FailClosed,
                stamp: Stamp::default(),
            }));
        };
        let out = match std::pin::Pin::new(rx).poll(cx) {
            std::task::Poll::Pending => return std::task::Poll::Pending,
            std::task::Poll::Ready(Ok(d)) => d,
            // the task was cancelled by a runtime shutdown: refuse
            std::task::Poll::Ready(Err(_)) => Ok(Decision {
                allowed: false,
                retry_after: Duration::ZERO,
                remaining: 0,
                source: Source::FailClosed,
                stamp: Stamp::default(),
            }),
        };
        self.rx = None;
        std::task::Poll::Ready(out)
    }
}

impl Drop for OwnedCheck {
    fn drop(&mut self) {
        let (Some(mut rx), Some((limiter, key, weight))) = (self.rx.take(), self.refund.take()) else {
            return;
        };
        if let Ok(Ok(d)) = rx.try_recv() {
            if d.allowed {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move { limiter.refund(&key, weight, &d).await });
                }
            }
        }
    }
}

/// The in-process GCRA used while Redis is down, with the configured share of each tier.
struct LocalGcra {
    tiers: Vec<Quota>,
    max_keys: usize,
    tats: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LocalGcra {
    fn new(tiers: Vec<Quota>, max_keys: usize) -> Self {
        Self { tiers, max_keys, tats: Mutex::new(HashMap::new()) }
    }

    fn check(&self, key: &str, weight: u64) -> (bool, Duration) {
        let Ok(mut map) = self.tats.lock() else { return (false, Duration::ZERO) };
        let now = Instant::now();
        if !map.contains_key(key) && map.len() >= self.max_keys {
            map.retain(|_, tats| tats.iter().any(|t| *t > now));
            if map.len() >= self.max_keys {
                return (false, Duration::from_secs(1));
            }
        }
        let tats = map.entry(key.to_owned()).or_insert_with(|| vec![now; self.tiers.len()]);
        let mut retry = Duration::ZERO;
        let mut news = Vec::with_capacity(self.tiers.len());
        for (q, tat) in self.tiers.iter().zip(tats.iter()) {
            let t = Duration::from_nanos(
                (q.period.as_nanos() / u128::from(q.limit)).min(u128::from(u64::MAX)) as u64,
            );
            let tat = (*tat).max(now);
            let new = deadline_after(tat, t.saturating_mul(weight.min(u64::from(u32::MAX)) as u32));
            let allow_at =
                new.checked_sub(t.saturating_mul(q.burst.min(u64::from(u32::MAX)) as u32)).unwrap_or(now);
            if allow_at > now {
                retry = retry.max(allow_at - now);
            }
            news.push(new);
        }
        if retry > Duration::ZERO {
            return (false, retry);
        }
        *tats = news;
        (true, Duration::ZERO)
    }
}
