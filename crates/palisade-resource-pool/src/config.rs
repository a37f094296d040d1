//! [`ResourcePoolConfig`]: every option of a resource pool, its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ordered, ConfigError};
use palisade_core::when_full::WhenFull;
use tokio::sync::Semaphore;

use crate::builder::ResourcePoolBuilder;
use crate::lifecycle::Lifecycle;
use crate::pool::ResourcePool;

/// The largest `min_size` a pool accepts. A minimum is kept whatever the load (made at
/// build and after every loss), so it is bounded: a floor from a config typo (or
/// `usize::MAX`) would otherwise create resources until memory runs out. 4,096 is far
/// beyond any set of connections one host keeps warm.
pub(crate) const MAX_MIN_SIZE: usize = 4096;

/// [`ResourcePoolConfig::create_timeout`]'s default: 30 s, HikariCP's `connectionTimeout`.
pub(crate) const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// [`ResourcePoolConfig::recycle_timeout`]'s default: 5 s, HikariCP's `validationTimeout`.
pub(crate) const DEFAULT_RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);

/// [`ResourcePoolConfig::destroy_timeout`]'s default: 5 s.
pub(crate) const DEFAULT_DESTROY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`ResourcePool`]'s settings: the storage of [`ResourcePoolBuilder`], and the form read
/// from a config file (feature `serde`; missing fields keep their defaults, durations are
/// strings like `"2s"`).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_resource_pool::{lifecycle_fn, ResourcePoolConfig};
///
/// let config: ResourcePoolConfig =
///     serde_json::from_str(r#"{ "name": "db", "max_size": 16, "when_full": { "wait": "2s" } }"#).unwrap();
/// let pool = config
///     .into_builder(lifecycle_fn(|| async { Ok::<_, std::io::Error>(()) }))
///     .build()
///     .unwrap();
/// assert_eq!(pool.snapshot().max_size, 16);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct ResourcePoolConfig {
    /// The pool's name in rejections, events and metrics. Default `"pool"`.
    pub name: String,
    /// Resources kept even when idle. Default 0, at most 4,096.
    ///
    /// The pool keeps them by itself: it starts creating them when built inside a Tokio
    /// runtime (else at its first use), and creates replacements in the background, one at
    /// a time, whenever a resource is destroyed, detached or found missing after an
    /// `acquire` or a release. A failed `create` stops the refill until the next of those
    /// events; [`ResourcePool::fill`] creates them and reports errors.
    pub min_size: usize,
    /// Most resources that may exist at once. Default 10, at least 1, at most tokio's
    /// [`Semaphore::MAX_PERMITS`]. Nothing is allocated up front for them.
    pub max_size: usize,
    /// What `acquire` does when every resource is lent out. Default
    /// `WhenFull::wait(Duration::MAX)`: wait without bound, in FIFO order.
    ///
    /// [`WhenFull::wait(d)`](WhenFull::wait) bounds the whole `acquire` — the wait, the
    /// recycle check and a `create` — by `d`, then fails with
    /// [`TimedOut`](palisade_core::rejection::TimedOut) (a huge `d` saturates to
    /// "effectively never", see [`palisade_core::time`]); [`WhenFull::Refuse`] fails at once
    /// with [`Overloaded`](palisade_core::rejection::Overloaded) when no place is free.
    ///
    /// The default waits, unlike the refusing default of palisade's other limits: a caller
    /// of a connection pool expects to wait for a connection (as deadpool's unbounded
    /// default wait).
    pub when_full: WhenFull,
    /// Destroys resources idle longer than this, down to `min_size`. Default `None`: never;
    /// not zero; a huge value saturates to "effectively never".
    ///
    /// When: as soon as a resource has been idle (given back and not lent since) for
    /// `idle_timeout`, a background task, the reaper, sends it through
    /// [`Lifecycle::destroy`], oldest first, while more than `min_size` resources exist
    /// (the oldest idle ones are kept for `min_size`). The reaper is one task per pool,
    /// spawned on the current Tokio runtime when the pool is built (else at its first
    /// `acquire`); it sleeps until the oldest idle resource's deadline, waits for a release
    /// when nothing can expire, and stops with the last [`ResourcePool`] handle or
    /// [`close`](ResourcePool::close). None is started for an idle timeout that saturates.
    /// (bb8's reaper runs at a fixed `reaper_rate`, 30 s by default, so its expiry is up to
    /// that late; this one wakes at each deadline: exact, and no periodic wake-ups.)
    ///
    /// Besides, every `acquire` and every release (a [`Pooled`](crate::Pooled) guard
    /// dropped) looks at the oldest idle resources (the bottom of the idle stack, O(1) per
    /// resource destroyed) and destroys the expired ones — an `acquire` inline before it
    /// lends (it never lends an expired resource beyond `min_size`), a release on spawned
    /// tasks — so expiry also holds while the reaper is busy in a slow `destroy`, and LIFO
    /// reuse at low load never hides the resources at the bottom.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub idle_timeout: Option<Duration>,
    /// Gives up on a [`Lifecycle::create`] after this long. Default 30 s; not zero; a huge
    /// value saturates to "effectively never" ([`palisade_core::time`]).
    ///
    /// A timed-out `create` is dropped, gives its place back and counts as a failed create
    /// ([`ResourcePoolSnapshot::create_failed`](crate::ResourcePoolSnapshot::create_failed)
    /// and a [`CreateFailed`](crate::ResourcePoolEvent::CreateFailed) event): the `acquire`
    /// that ran it fails with [`HookTimedOut`](crate::error::HookTimedOut) (site
    /// `"create"`), the background refill stops until the next event.
    ///
    /// Why a finite default (deadpool's `Timeouts::create` defaults to none): a `create`
    /// that never answers (a connect to a black-holed address) would keep one of the
    /// `max_size` places for ever and, with the default unbounded wait, wedge every
    /// `acquire` of a small pool. 30 s is HikariCP's `connectionTimeout` default, far above
    /// an honest connect and handshake; set `Duration::MAX` to wait for ever.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub create_timeout: Duration,
    /// Gives up on a [`Lifecycle::recycle`] check after this long. Default 5 s; not zero; a
    /// huge value saturates to "effectively never".
    ///
    /// A timed-out check counts as failed (as in deadpool): the resource goes through
    /// [`Lifecycle::destroy`] (reason [`Broken`](crate::DestroyReason::Broken)) and
    /// `acquire` tries the next one. Finite by default for the same reason as
    /// `create_timeout` (the check runs while the caller holds a place); 5 s is HikariCP's
    /// `validationTimeout` default.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub recycle_timeout: Duration,
    /// Gives up on a [`Lifecycle::destroy`] after this long. Default 5 s; not zero; a huge
    /// value saturates to "effectively never".
    ///
    /// Past it the hook's future is dropped, and the resource with it (a connection is
    /// then closed by its own `Drop`, without the graceful goodbye the hook was sending);
    /// the resource counts as destroyed and a warning is logged. A teardown runs inside an
    /// `acquire` (an expired or broken resource met on the way), in
    /// [`close`](ResourcePool::close) and on spawned tasks that hold the pool's state: a
    /// hook that never finishes would stall each of them for ever (deadpool has no such
    /// hook: it drops resources).
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub destroy_timeout: Duration,
}

impl Default for ResourcePoolConfig {
    fn default() -> Self {
        Self {
            name: String::from("pool"),
            min_size: 0,
            max_size: 10,
            when_full: WhenFull::wait(Duration::MAX),
            idle_timeout: None,
            create_timeout: DEFAULT_CREATE_TIMEOUT,
            recycle_timeout: DEFAULT_RECYCLE_TIMEOUT,
            destroy_timeout: DEFAULT_DESTROY_TIMEOUT,
        }
    }
}

impl ResourcePoolConfig {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// `max_size` is zero or above [`Semaphore::MAX_PERMITS`], `min_size` above 4,096 or
    /// above `max_size`, or `idle_timeout`, `create_timeout`, `recycle_timeout` or
    /// `destroy_timeout` is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_size >= 1, "max_size", "must be at least 1")?;
        ensure(self.min_size <= MAX_MIN_SIZE, "min_size", "must be at most 4096")?;
        ensure_ordered("min_size", self.min_size, "max_size", self.max_size)?;
        ensure(
            self.max_size <= Semaphore::MAX_PERMITS,
            "max_size",
            "must not exceed tokio's semaphore limit (usize::MAX >> 3)",
        )?;
        if let Some(t) = self.idle_timeout {
            ensure_nonzero_duration("idle_timeout", t)?;
        }
        ensure_nonzero_duration("create_timeout", self.create_timeout)?;
        ensure_nonzero_duration("recycle_timeout", self.recycle_timeout)?;
        ensure_nonzero_duration("destroy_timeout", self.destroy_timeout)?;
        Ok(())
    }

    /// A builder with these settings for resources from `lifecycle` (validated by
    /// [`ResourcePoolBuilder::build`]).
    pub fn into_builder<Hooks: Lifecycle>(self, lifecycle: Hooks) -> ResourcePoolBuilder<Hooks> {
        ResourcePool::builder(lifecycle).config(self)
    }
}
