//! A fleet-wide concurrency limit: at most N calls in flight across every instance.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::rejection::{BulkheadFull, BulkheadFullReason};
use palisade_core::rng::AtomicRng;
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tower_service::Service;

use crate::backend::{answered, LuaScript, RedisBackend};
use crate::error::BackendError;
use crate::service::fleet_service;
use crate::OnRedisDown;

/// `KEYS[1]`: the lease set (member = lease id, score = expiry in Redis ms). `ARGV`: limit,
/// lease ms, lease id (made by the instance, so that it can give back a lease whose reply it
/// never saw). Expired leases are removed before counting. Returns 0 when granted, else the
/// ms until the earliest lease expires (at least 1). The set's expiry only ever grows: an
/// instance with a shorter lease must not expire the longer leases of the others.
const ACQUIRE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  if redis.call('PTTL', KEYS[1]) < lease * 2 then redis.call('PEXPIRE', KEYS[1], lease * 2) end
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
";

/// Renews lease `ARGV[2]` for `ARGV[1]` ms. Returns 1 when it was still held; when it had
/// lapsed (or Redis lost it), takes it again if fewer than `ARGV[3]` (the limit) leases are
/// held and returns 2, else returns 0.
const RENEW_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
local r = 1
if not score or tonumber(score) <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
  r = 2
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
if redis.call('PTTL', KEYS[1]) < lease * 2 then redis.call('PEXPIRE', KEYS[1], lease * 2) end
return r
";

struct Shared {
    name: Arc<str>,
    backend: RedisBackend,
    limit: u32,
    lease: Duration,
    on_down: OnRedisDown,
    local: Arc<Semaphore>,
    set_key: String,
    /// This instance's random tag and the number of its next lease: lease ids are
    /// `<tag>:<n>`, unique across the fleet without a round trip.
    tag: u64,
    next_id: AtomicU64,
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
    /// `ceil(share × N)` calls of this instance. Calls admitted by `FailOpen` or `Local` hold
    /// no lease: when Redis answers again they run to their end uncounted by the fleet, which
    /// may then have that many calls more than N in flight.
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
        RedisBulkheadLayer {
            shared: Arc::new(Shared {
                name: self.name,
                backend: self.backend,
                limit: self.limit,
                lease: self.lease,
                on_down: self.on_down,
                local: Arc::new(Semaphore::new(local)),
                set_key,
                tag: AtomicRng::from_entropy().next_u64(),
                next_id: AtomicU64::new(1),
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
/// [`BulkheadFull`] (`NoPermit`): there is no fleet-wide wait queue. Its `retry_after` is a
/// hint: when the earliest lease would expire if nobody renewed it (a permit usually comes
/// back sooner, when a call ends; a renewed lease later). Nothing is reserved in
/// `poll_ready`, so a service dropped after `poll_ready` holds nothing. The inner service is
/// made ready in `poll_ready` and moved into the response future (tower's clone-and-swap),
/// so `S` must be `Clone`. Dropping the response future (or its completion) releases the
/// permit and drops the inner call: one `ZREM`, queued on the connection before the drop
/// returns, so this instance's next acquisition reaches Redis after it (if that `ZREM` fails,
/// the lease expires by itself within the lease).
///
/// # Leases
///
/// Each permit is a lease in one Redis sorted set, expiring by Redis' `TIME` (instances with
/// skewed clocks agree), renewed every third of the lease while the call runs. The lease id is
/// made by the instance, so a permit is given back whenever its reply was not seen: the
/// response future dropped while the request was in Redis, or a request that timed out (then
/// decided by the down policy) and that a slow Redis executed afterwards. The set holds at
/// most `max_concurrent` live leases (expired ones are removed on every acquisition) and
/// expires when unused; an instance with a shorter lease never shortens the set's expiry.
///
/// A lease can lapse while its call still runs, when no renewal reached Redis for a whole
/// lease (Redis down, or slower than a third of the lease) or when Redis lost its data
/// (restart without persistence, flush, eviction under `maxmemory`). The call is not
/// cancelled: the next renewal that reaches Redis takes the lease again if the fleet has
/// room, and otherwise keeps trying each period while the call runs uncounted — the fleet
/// then has more than N calls in flight by the number of such calls. Both cases publish
/// [`RedisEvent::LeaseLost`](crate::RedisEvent::LeaseLost) and count in the backend's
/// `lost_leases`. Keep the lease well above three times the backend's timeout.
/// Renewals and releases go around the backend's guard breaker (no caller waits for them):
/// a guard opened by other calls does not let a lease lapse while Redis answers.
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
    /// The acquisition was sent (or is about to be) and its reply not seen: Redis may grant
    /// it, so dropping this gives it back.
    Pending {
        id: Arc<str>,
    },
    Redis {
        id: Arc<str>,
        renew: JoinHandle<()>,
        gate: Arc<Mutex<bool>>,
    },
    Local(#[allow(dead_code)] OwnedSemaphorePermit),
    /// Nothing to give back (admitted by fail-open, or refused by a full fleet).
    None,
}

/// One call's permit; dropping it gives the permit back at once: the `ZREM` of a lease still
/// pending or held is queued on the connection before `drop` returns (its reply is awaited by
/// a spawned task), so whatever this instance sends next — the same caller's next
/// acquisition — reaches Redis after it.
struct Lease {
    shared: Arc<Shared>,
    held: Held,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (id, gate) = match std::mem::replace(&mut self.held, Held::None) {
            Held::Pending { id } => (id, None),
            Held::Redis { id, renew, gate } => {
                renew.abort();
                (id, Some(gate))
            }
            Held::Local(_) | Held::None => return,
        };
        // Without a runtime (it is shutting down) the lease expires by itself.
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let key = self.shared.set_key.clone();
        // Around the guard breaker: a release is never skipped because other calls failed;
        // on failure the lease expires by itself.
        let release = self.shared.backend.run_unguarded("lease", move |mut conn| async move {
            redis::cmd("ZREM").arg(key).arg(&*id).query_async(&mut conn).await
        });
        // Under the gate: a renewal is queued before the release or never (one queued after
        // it would take the lease again).
        let _released = gate.as_ref().map(|g| {
            let mut released = g.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *released = true;
            released
        });
        if let Err(rest) = queue_now(release) {
            handle.spawn(rest);
        }
    }
}

type RedisReply = Pin<Box<dyn Future<Output = Result<redis::Value, BackendError>> + Send + 'static>>;

/// Polls `call` once, which queues its command on the backend's connection (commands of one
/// connection reach Redis in the order they were queued): its output if that finished it,
/// else the rest of it to await. Unconstrained: tokio's cooperative budget must not defer the
/// queuing.
fn queue_now(
    call: RedisReply,
) -> Result<Result<redis::Value, BackendError>, tokio::task::Unconstrained<RedisReply>> {
    let mut call = tokio::task::unconstrained(call);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut call).poll(&mut cx) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(call),
    }
}

async fn acquire(shared: &Arc<Shared>) -> Result<Lease, BoxError> {
    let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let id: Arc<str> = format!("{:016x}:{n}", shared.tag).into();
    let mut cmd = shared.acquire.cmd(std::slice::from_ref(&shared.set_key));
    cmd.arg(shared.limit).arg(shared.lease.as_millis() as u64).arg(&*id);
    let code = shared.acquire.code();
    // From here on a dropped future (or a reply that never comes) gives the lease back.
    let mut lease = Lease { shared: shared.clone(), held: Held::Pending { id: id.clone() } };
    let reply = shared.backend.run("lease", move |conn| LuaScript::run(code, cmd, conn)).await;
    let parsed = match reply {
        Ok(v) => <i64 as redis::FromRedisValue>::from_redis_value(v).ok(),
        Err(e) => {
            // The guard refused or no connection could be made (nothing was sent), or Redis
            // answered with an error (the script stopped before granting): nothing to give
            // back. Otherwise (a timeout, a lost connection) Redis may still grant it:
            // `lease` stays pending.
            let settled = match &e {
                BackendError::BreakerOpen => true,
                BackendError::Redis(r) => answered(r) || r.is_connection_refusal(),
                _ => false,
            };
            if settled {
                lease.held = Held::None;
            }
            None
        }
    };
    match parsed {
        Some(0) => {
            let gate = Arc::new(Mutex::new(false));
            let renew = tokio::spawn(renew_loop(Arc::downgrade(shared), id.clone(), gate.clone()));
            lease.held = Held::Redis { id, renew, gate };
            Ok(lease)
        }
        Some(wait) => {
            lease.held = Held::None;
            Err(BulkheadFull::new(shared.name.clone(), BulkheadFullReason::NoPermit)
                .with_retry_after(Duration::from_millis(wait.max(0).unsigned_abs()))
                .into())
        }
        // Dropping `lease` (still pending) gives back whatever Redis may grant later.
        None => match shared.on_down {
            OnRedisDown::FailOpen => {
                shared.backend.fallback("lease", "fail_open");
                Ok(Lease { shared: shared.clone(), held: Held::None })
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

/// Renews lease `id` every third of the lease while the call runs; a lapsed lease is taken
/// again when the fleet has room (see [`RedisBulkheadLayer`]'s `# Leases`).
async fn renew_loop(shared: std::sync::Weak<Shared>, id: Arc<str>, gate: Arc<Mutex<bool>>) {
    let period = match shared.upgrade() {
        Some(s) => s.lease / 3,
        None => return,
    };
    // A fixed schedule: a slow renewal does not push the next one later.
    let mut tick = tokio::time::interval_at(deadline_from_now(period), period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Reported once per lapse (the event is also traced at WARN by the backend's bus).
    let mut lost = false;
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let mut cmd = s.renew.cmd(std::slice::from_ref(&s.set_key));
        cmd.arg(s.lease.as_millis() as u64).arg(&*id).arg(s.limit);
        let code = s.renew.code();
        // Around the guard breaker, as a release: a renewal is background work no caller
        // waits for, and a guard opened by other calls must not let a running call's lease
        // lapse while Redis answers (the fleet would admit one more).
        let renewal = s.backend.run_unguarded("lease", move |conn| LuaScript::run(code, cmd, conn));
        let renewal = {
            // Queued under the gate, before the release or not at all.
            let released = gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *released {
                return;
            }
            queue_now(renewal)
        };
        let renewed = match renewal {
            Ok(out) => out,
            Err(rest) => rest.await,
        };
        match renewed {
            Ok(redis::Value::Int(0)) if !lost => {
                lost = true;
                s.backend.lease_lost(s.name.clone(), false);
            }
            Ok(redis::Value::Int(2)) => {
                lost = false;
                s.backend.lease_lost(s.name.clone(), true);
            }
            // Renewed, still lost, or no answer (the next tick tries again).
            _ => {}
        }
    }
}
