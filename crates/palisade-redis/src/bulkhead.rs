//! A fleet-wide concurrency limit: at most N calls in flight across every instance.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::rejection::{BulkheadFull, BulkheadFullReason};
use palisade_core::BoxError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tower_service::Service;

use crate::backend::{LuaScript, RedisBackend};
use crate::service::fleet_service;
use crate::OnRedisDown;

/// `KEYS[1]`: the lease set (member = lease id, score = expiry in Redis ms), `KEYS[2]`: the
/// id sequence. `ARGV`: limit, lease ms. Expired leases are removed before counting.
/// Returns `{id, 0}` when granted, `{0, ms until the earliest lease expires}` when full.
const ACQUIRE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  local id = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], now + lease, id)
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return {id, 0}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
";

/// Renews lease `ARGV[2]` for `ARGV[1]` ms if it is still held. Returns 1 when renewed.
const RENEW_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 1
";

struct Shared {
    name: Arc<str>,
    backend: RedisBackend,
    limit: u32,
    lease: Duration,
    on_down: OnRedisDown,
    local: Arc<Semaphore>,
    set_key: String,
    seq_key: String,
    acquire: LuaScript,
    renew: LuaScript,
}

/// Builds a [`RedisBulkheadLayer`].
#[derive(Debug)]
pub struct RedisBulkheadBuilder {
    name: Arc<str>,
    backend: RedisBackend,
    limit: u32,
    lease: Duration,
    on_down: OnRedisDown,
}

impl RedisBulkheadBuilder {
    /// How long a permit lives without renewal (the holder renews it every third of this
    /// while the call runs). The permits of a crashed instance come back after at most this.
    /// Default 10 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// What to do when Redis is slow or down. Default [`OnRedisDown::FailClosed`]
    /// (calls are refused with [`BulkheadFull`]); `Local { share }` admits up to
    /// `ceil(share × N)` calls of this instance.
    pub fn on_redis_down(mut self, policy: OnRedisDown) -> Self {
        self.on_down = policy;
        self
    }
    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_concurrent` is not between 1 and [`MAX_CONCURRENT`], the
    /// lease not between 30 ms and a day, or the local share not a ratio.
    pub fn build(self) -> Result<RedisBulkheadLayer, ConfigError> {
        if self.limit == 0 || self.limit > MAX_CONCURRENT {
            return Err(ConfigError::new("max_concurrent", "between 1 and 1,000,000"));
        }
        if self.lease < Duration::from_millis(30) || self.lease > Duration::from_secs(86_400) {
            return Err(ConfigError::new("lease", "between 30 ms and one day"));
        }
        if let OnRedisDown::Local { share } = self.on_down {
            palisade_core::config::ensure_ratio("on_redis_down.share", share)?;
        }
        Ok(self.assemble())
    }

    /// The layer from settings already valid.
    fn assemble(self) -> RedisBulkheadLayer {
        let local = match self.on_down {
            OnRedisDown::Local { share } => (f64::from(self.limit) * share.clamp(0.0, 1.0)).ceil() as usize,
            _ => 0,
        };
        let set_key = self.backend.key(&["bulkhead", &self.name, "leases"]);
        let seq_key = self.backend.key(&["bulkhead", &self.name, "seq"]);
        RedisBulkheadLayer {
            shared: Arc::new(Shared {
                name: self.name,
                backend: self.backend,
                limit: self.limit,
                lease: self.lease,
                on_down: self.on_down,
                local: Arc::new(Semaphore::new(local)),
                set_key,
                seq_key,
                acquire: LuaScript::new(ACQUIRE_LUA),
                renew: LuaScript::new(RENEW_LUA),
            }),
        }
    }
}

/// The most permits a fleet-wide bulkhead has.
pub const MAX_CONCURRENT: u32 = 1_000_000;

/// A tower layer: at most `limit` calls in flight across every instance that builds a
/// bulkhead with the same name on the same Redis.
///
/// The permit is taken in the response future (one Redis round trip) before the inner
/// service is called; a call that finds every permit taken is refused at once with
/// [`BulkheadFull`] (`NoPermit`): there is no fleet-wide wait queue. The inner service is
/// made ready in `poll_ready` and moved into the response future (tower's clone-and-swap),
/// so `S` must be `Clone`. Dropping the response future releases the permit (one `ZREM`
/// sent from a spawned task) and drops the inner call.
#[derive(Clone)]
pub struct RedisBulkheadLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBulkheadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBulkheadLayer")
            .field("name", &self.shared.name)
            .field("limit", &self.shared.limit)
            .finish()
    }
}

impl RedisBulkheadLayer {
    /// The bulkhead `name` with `max_concurrent` permits across the fleet, 10 s leases,
    /// refusing while Redis is down. Never fails: `max_concurrent` is brought into
    /// 1 ..= [`MAX_CONCURRENT`].
    pub fn new(name: impl Into<Arc<str>>, backend: RedisBackend, max_concurrent: u32) -> Self {
        Self::builder(name, backend, max_concurrent.clamp(1, MAX_CONCURRENT)).assemble()
    }

    /// A builder for the bulkhead `name` with `max_concurrent` permits across the fleet.
    pub fn builder(
        name: impl Into<Arc<str>>,
        backend: RedisBackend,
        max_concurrent: u32,
    ) -> RedisBulkheadBuilder {
        RedisBulkheadBuilder {
            name: name.into(),
            backend,
            limit: max_concurrent,
            lease: Duration::from_secs(10),
            on_down: OnRedisDown::FailClosed,
        }
    }

    /// Permits held across the fleet right now (one Redis round trip), `None` when Redis
    /// did not answer.
    pub async fn in_flight(&self) -> Option<u64> {
        let s = &self.shared;
        let key = s.set_key.clone();
        let v = s
            .backend
            .run("lease", move |mut conn| async move {
                let t: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
                let now = t.0 * 1000 + t.1 / 1000;
                redis::cmd("ZCOUNT").arg(&key).arg(format!("({now}")).arg("+inf").query_async(&mut conn).await
            })
            .await
            .ok()?;
        redis::FromRedisValue::from_redis_value(v).ok()
    }
}

fleet_service! {
    /// The service built by [`RedisBulkheadLayer`].
    RedisBulkheadLayer => RedisBulkhead
}

impl<S, Req> Service<Req> for RedisBulkhead<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let lease = acquire(&shared).await?;
            let out = inner.call(req).await.map_err(Into::into);
            drop(lease);
            out
        })
    }
}

enum Held {
    Redis { id: i64, renew: JoinHandle<()> },
    Local(#[allow(dead_code)] OwnedSemaphorePermit),
    Open,
}

struct Lease {
    shared: Arc<Shared>,
    held: Held,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Held::Redis { id, renew } = &self.held {
            renew.abort();
            let id = *id;
            let shared = self.shared.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let key = shared.set_key.clone();
                    // On failure the lease expires by itself.
                    let _ = shared
                        .backend
                        .run("lease", move |mut conn| async move {
                            redis::cmd("ZREM").arg(key).arg(id).query_async(&mut conn).await
                        })
                        .await;
                });
            }
        }
    }
}

async fn acquire(shared: &Arc<Shared>) -> Result<Lease, BoxError> {
    let keys = [shared.set_key.clone(), shared.seq_key.clone()];
    let mut cmd = shared.acquire.cmd(&keys);
    cmd.arg(shared.limit).arg(shared.lease.as_millis() as u64);
    let code = shared.acquire.code();
    let reply = shared.backend.run("lease", move |conn| LuaScript::run(code, cmd, conn)).await;
    let parsed = reply.ok().and_then(|v| <(i64, i64) as redis::FromRedisValue>::from_redis_value(v).ok());
    match parsed {
        Some((id, _)) if id > 0 => {
            let renew = tokio::spawn(renew_loop(Arc::downgrade(shared), id));
            Ok(Lease { shared: shared.clone(), held: Held::Redis { id, renew } })
        }
        Some((_, wait)) => Err(BulkheadFull::new(shared.name.clone(), BulkheadFullReason::NoPermit)
            .with_retry_after(Duration::from_millis(wait.max(0) as u64))
            .into()),
        None => match shared.on_down {
            OnRedisDown::FailOpen => {
                shared.backend.fallback("lease", "fail_open");
                Ok(Lease { shared: shared.clone(), held: Held::Open })
            }
            OnRedisDown::FailClosed => {
                shared.backend.fallback("lease", "fail_closed");
                Err(BulkheadFull::new(shared.name.clone(), BulkheadFullReason::NoPermit).into())
            }
            OnRedisDown::Local { .. } => {
                shared.backend.fallback("lease", "local");
                match shared.local.clone().try_acquire_owned() {
                    Ok(p) => Ok(Lease { shared: shared.clone(), held: Held::Local(p) }),
                    Err(_) => {
                        Err(BulkheadFull::new(shared.name.clone(), BulkheadFullReason::NoPermit).into())
                    }
                }
            }
        },
    }
}

async fn renew_loop(shared: std::sync::Weak<Shared>, id: i64) {
    let period = match shared.upgrade() {
        Some(s) => s.lease / 3,
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(s) = shared.upgrade() else { return };
        let mut cmd = s.renew.cmd(std::slice::from_ref(&s.set_key));
        cmd.arg(s.lease.as_millis() as u64).arg(id);
        let code = s.renew.code();
        let renewed = s.backend.run("lease", move |conn| LuaScript::run(code, cmd, conn)).await;
        if matches!(renewed, Ok(redis::Value::Int(0))) {
            tracing::warn!(target: "palisade", pattern = "redis_bulkhead", name = %s.name, lease = id, "lease expired before renewal");
            return;
        }
    }
}
