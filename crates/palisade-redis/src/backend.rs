//! The shared Redis connection: a timeout on every call, palisade's own circuit breaker around
//! the connection, events and metrics for every failure.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use palisade_core::config::ConfigError;
use palisade_core::event::{Event, EventBus, FieldValue};
use palisade_core::metric::Counter;

use crate::error::BackendError;
use redis::aio::ConnectionManager;
use tower::{Layer, Service, ServiceExt};
use tracing::Level;

/// One Redis operation, boxed so that the breaker-guarded executor has a nameable type (a
/// newtype: a bare `Pin<Box<dyn Future>>` request type trips rustc's higher-ranked
/// lifetime check once the call is spawned).
pub(crate) struct RedisCall(Pin<Box<dyn Future<Output = Result<Reply, BackendError>> + Send + 'static>>);

/// What Redis answered: a value, or an error reply that says nothing about the connection
/// (see [`answered`]). The guard breaker counts both as a success.
pub(crate) type Reply = Result<redis::Value, Arc<redis::RedisError>>;

/// Whether `e` is Redis answering about the data rather than the connection failing: a key
/// of the wrong type written by someone else (`WRONGTYPE`) or a command or script error
/// (`ERR …`, e.g. a hash field that is not an integer). Such a call fails (its decision goes
/// to the down policy, with events), but Redis is reachable and quick, so the guard breaker
/// around the connection must not open for every other user of the backend.
pub(crate) fn answered(e: &redis::RedisError) -> bool {
    matches!(e.code(), Some("WRONGTYPE" | "ERR"))
}

/// What a backend publishes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RedisEvent {
    /// A Redis call failed or timed out, or the guard breaker refused it.
    CallFailed {
        /// What the call was for (`"gcra"`, `"lease"`, `"breaker"`, …).
        op: &'static str,
        /// Why.
        error: BackendError,
    },
    /// A decision was made without Redis, by the configured [`OnRedisDown`](crate::OnRedisDown)
    /// policy; for the shared circuit breaker (`op` `"breaker"`), an outcome the fleet could
    /// not count or a call refused by `fail_closed`.
    Fallback {
        /// What the decision was for.
        op: &'static str,
        /// The policy applied (`"fail_open"`, `"fail_closed"`, `"local"`).
        policy: &'static str,
    },
    /// A fleet-wide bulkhead's renewal found the lease of a call still running gone (no
    /// renewal reached Redis for a whole lease, or Redis lost its data). `taken_again`: the
    /// renewal took it back because the fleet had room; otherwise the call runs uncounted
    /// (the fleet may admit one more than its limit) and each later renewal tries again.
    LeaseLost {
        /// The bulkhead's name.
        bulkhead: Arc<str>,
        /// Whether the renewal took the lease again.
        taken_again: bool,
    },
}

impl Event for RedisEvent {
    /// `op` (in `extra`) for all; `error` for a failed call, `reason` (the policy applied:
    /// `fail_open`, `fail_closed`, `local`) for a fallback, `bulkhead` and `taken_again` for a
    /// lost lease.
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            RedisEvent::CallFailed { op, error } => {
                record("op", (*op).into());
                record("error", error.to_string().into());
            }
            RedisEvent::Fallback { op, policy } => {
                record("op", (*op).into());
                record("reason", (*policy).into());
            }
            RedisEvent::LeaseLost { bulkhead, taken_again } => {
                record("op", "lease".into());
                record("bulkhead", bulkhead.into());
                record("taken_again", (*taken_again).into());
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            RedisEvent::CallFailed { .. } => "call_failed",
            RedisEvent::Fallback { .. } => "fallback",
            RedisEvent::LeaseLost { .. } => "lease_lost",
        }
    }
    fn level(&self) -> Level {
        Level::WARN
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Exec;

impl Service<RedisCall> for Exec {
    type Response = Reply;
    type Error = BackendError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, BackendError>> + Send + 'static>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: RedisCall) -> Self::Future {
        req.0
    }
}

/// The counters of a [`RedisBackend`] at one moment; from [`RedisBackend::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisBackendSnapshot {
    /// Redis calls made.
    pub calls: u64,
    /// Redis calls that failed, timed out or were refused by the guard breaker.
    pub failures: u64,
    /// Decisions made by the down policy instead of Redis.
    pub fallbacks: u64,
    /// Bulkhead leases found lapsed while their call ran (each a [`RedisEvent::LeaseLost`]).
    pub lost_leases: u64,
}

/// The counters behind [`RedisBackendSnapshot`] (exported with the `metrics` feature).
#[derive(Debug)]
struct Counters {
    calls: Counter,
    failures: Counter,
    fallbacks: Counter,
    lost_leases: Counter,
}

struct Inner {
    conn: ConnectionManager,
    timeout: Duration,
    guard: CircuitBreaker<Exec>,
    events: EventBus<RedisEvent>,
    metrics: Counters,
    prefix: Arc<str>,
}

impl Inner {
    fn failed(&self, what: &'static str, result: &Result<redis::Value, BackendError>) {
        if let Err(error) = result {
            self.metrics.failures.increment();
            self.events.publish(RedisEvent::CallFailed { op: what, error: error.clone() });
        }
    }
}

/// `fut` within `timeout`; an error reply about the data is an `Ok(Err)` (see [`answered`]).
async fn timed<Fut>(timeout: Duration, fut: Fut) -> Result<Reply, BackendError>
where
    Fut: Future<Output = redis::RedisResult<redis::Value>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(Ok(v)),
        Ok(Err(e)) if answered(&e) => Ok(Err(Arc::new(e))),
        Ok(Err(e)) => Err(BackendError::Redis(Arc::new(e))),
        Err(_) => Err(BackendError::Timeout(timeout)),
    }
}

/// A connection to the Redis the fleet shares. Cheap to clone; every clone shares the
/// connection, the guard breaker, the events and the metrics.
///
/// The connection is redis-rs' `ConnectionManager`: one multiplexed connection (concurrent
/// calls are pipelined on it) that reconnects by itself with backoff. Every call has a
/// timeout; timeouts and connection errors feed palisade's circuit breaker around the
/// connection, so while Redis is down calls fail at once instead of each waiting for the
/// timeout. An error *reply* about the data (`WRONGTYPE` from a key someone else wrote,
/// `ERR …`) fails its call and is reported, but does not feed the guard: Redis answered, and
/// one poisoned key must not send every limit on the backend to its down policy.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("timeout", &self.inner.timeout)
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// Builds a [`RedisBackend`].
#[derive(Debug, Clone)]
pub struct RedisBackendBuilder {
    url: String,
    name: Arc<str>,
    prefix: Arc<str>,
    timeout: Duration,
    guard_failures: u32,
    guard_wait: Duration,
}

impl RedisBackend {
    /// A builder for a backend on `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.into(),
            name: "redis".into(),
            prefix: "palisade".into(),
            timeout: Duration::from_millis(50),
            guard_failures: 5,
            guard_wait: Duration::from_secs(1),
        }
    }

    /// Calls `listener` with every event from now on.
    pub fn on_event<F: Fn(&RedisEvent) + Send + Sync + 'static>(&self, listener: F) {
        self.inner.events.subscribe(listener);
    }

    /// The backend's counters now.
    pub fn snapshot(&self) -> RedisBackendSnapshot {
        let m = &self.inner.metrics;
        RedisBackendSnapshot {
            calls: m.calls.get(),
            failures: m.failures.get(),
            fallbacks: m.fallbacks.get(),
            lost_leases: m.lost_leases.get(),
        }
    }

    /// The timeout applied to every Redis call.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) fn key(&self, parts: &[&str]) -> String {
        let mut k =
            String::with_capacity(self.inner.prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
        k.push_str(&self.inner.prefix);
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// Runs `op` on the connection with the timeout, through the guard breaker.
    ///
    /// Boxed with an explicit `Send + 'static` so that callers can spawn it (rustc cannot
    /// prove the breaker's `Service` impl general enough through an `async fn`).
    pub(crate) fn run<F, Fut>(
        &self,
        what: &'static str,
        op: F,
    ) -> Pin<Box<dyn Future<Output = Result<redis::Value, BackendError>> + Send + 'static>>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<redis::Value>> + Send + 'static,
    {
        let inner = self.inner.clone();
        inner.metrics.calls.increment();
        let call = RedisCall(Box::pin(timed(inner.timeout, op(inner.conn.clone()))));
        let guarded = inner.guard.clone().oneshot(call);
        Box::pin(async move {
            let result = match guarded.await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(BackendError::Redis(e)),
                Err(e) => Err(match e.downcast::<BackendError>() {
                    Ok(b) => *b,
                    Err(other) => {
                        if palisade_core::rejection::find::<palisade_core::rejection::CircuitOpen>(&*other)
                            .is_some()
                        {
                            BackendError::BreakerOpen
                        } else {
                            BackendError::Reply(other.to_string())
                        }
                    }
                }),
            };
            inner.failed(what, &result);
            result
        })
    }

    /// Runs `op` with the timeout but around the guard breaker: for background work no caller
    /// waits for (a lease given back or renewed), which must not be skipped because other
    /// calls opened the guard. Counted and reported like every call; its outcome does not
    /// feed the guard.
    pub(crate) fn run_unguarded<F, Fut>(
        &self,
        what: &'static str,
        op: F,
    ) -> Pin<Box<dyn Future<Output = Result<redis::Value, BackendError>> + Send + 'static>>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<redis::Value>> + Send + 'static,
    {
        let inner = self.inner.clone();
        inner.metrics.calls.increment();
        let call = timed(inner.timeout, op(inner.conn.clone()));
        Box::pin(async move {
            let result = match call.await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(BackendError::Redis(e)),
                Err(e) => Err(e),
            };
            inner.failed(what, &result);
            result
        })
    }

    pub(crate) fn fallback(&self, op: &'static str, policy: &'static str) {
        self.inner.metrics.fallbacks.increment();
        self.inner.events.publish(RedisEvent::Fallback { op, policy });
    }

    /// A bulkhead lease found lapsed: the event and the counter.
    pub(crate) fn lease_lost(&self, bulkhead: Arc<str>, taken_again: bool) {
        self.inner.metrics.lost_leases.increment();
        self.inner.events.publish(RedisEvent::LeaseLost { bulkhead, taken_again });
    }
}

impl RedisBackendBuilder {
    /// The name used for events, metrics and the guard breaker. Default `"redis"`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }
    /// The prefix of every Redis key. Default `"palisade"`.
    pub fn key_prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// The timeout of every Redis call (connecting included). Default 50 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// The guard breaker opens after `failures` consecutive Redis calls that timed out or lost
    /// the connection (error replies about the data do not count) and stays open
    /// for `wait` (then lets one trial call through). Default 5 and 1 s.
    pub fn guard(mut self, failures: u32, wait: Duration) -> Self {
        self.guard_failures = failures;
        self.guard_wait = wait;
        self
    }

    /// Builds the backend. The connection is made lazily: building succeeds while Redis is
    /// down. Must be called inside a tokio runtime.
    pub fn build(self) -> Result<RedisBackend, ConfigError> {
        palisade_core::config::ensure_nonzero_duration("timeout", self.timeout)?;
        palisade_core::config::ensure_nonzero_duration("guard.wait", self.guard_wait)?;
        if self.guard_failures == 0 {
            return Err(ConfigError::new("guard.failures", "must be at least 1"));
        }
        // redis-rs' lazy connection panics outside a runtime: a clear error instead
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new("runtime", "build the Redis backend inside a tokio runtime"));
        }
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| ConfigError::new("url", e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ConfigError::new("url", e.to_string()))?;
        let guard_layer = CircuitBreakerLayer::builder()
            .name(format!("{}-guard", self.name))
            .consecutive_failures(self.guard_failures)
            .wait_in_open(self.guard_wait)
            .build()
            .map_err(|e| e.in_section("guard"))?;
        let name = self.name.clone();
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                conn,
                timeout: self.timeout,
                guard: guard_layer.layer(Exec),
                events: EventBus::new("redis", name.clone()),
                metrics: Counters {
                    calls: Counter::new("palisade_redis_calls_total", &name),
                    failures: Counter::new("palisade_redis_failures_total", &name),
                    fallbacks: Counter::new("palisade_redis_fallbacks_total", &name),
                    lost_leases: Counter::new("palisade_redis_lost_leases_total", &name),
                },
                prefix: self.prefix,
            }),
        })
    }
}

/// A Lua script run with `EVALSHA`; on `NOSCRIPT` (after a Redis restart or `SCRIPT FLUSH`)
/// run once more with `EVAL` and its source, which also caches it for the next `EVALSHA`
/// (a `SCRIPT LOAD` then `EVALSHA` failed again when another flush came between the two).
#[derive(Debug, Clone)]
pub(crate) struct LuaScript {
    code: &'static str,
    sha: Arc<str>,
}

impl LuaScript {
    pub(crate) fn new(code: &'static str) -> Self {
        Self { code, sha: redis::Script::new(code).get_hash().into() }
    }

    /// An `EVALSHA` command with `keys`; push the arguments onto it.
    pub(crate) fn cmd(&self, keys: &[String]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&*self.sha).arg(keys.len()).arg(keys);
        cmd
    }

    pub(crate) async fn run(
        code: &'static str,
        cmd: redis::Cmd,
        mut conn: ConnectionManager,
    ) -> redis::RedisResult<redis::Value> {
        match cmd.query_async::<redis::Value>(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // `EVALSHA <sha> <numkeys> …` → `EVAL <code> <numkeys> …`
                let mut eval = redis::cmd("EVAL");
                eval.arg(code);
                for a in cmd.args_iter().skip(2) {
                    if let redis::Arg::Simple(bytes) = a {
                        eval.arg(bytes);
                    }
                }
                eval.query_async(&mut conn).await
            }
            other => other,
        }
    }

    /// The script's SHA1, for `EVALSHA`.
    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}
