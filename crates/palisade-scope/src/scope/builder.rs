//! [`ScopeBuilder`] over [`ScopeConfig`]: a scope's concurrency limit and timeout.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::time::deadline_from_now;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Scope;

/// Every option of a [`Scope`]: the builder's storage ([`Scope::builder`]) and, with the
/// feature `serde`, the settings-file form (`{"limit": 4, "timeout": "5s"}`, both optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ScopeConfig {
    /// At most this many tasks spawned in the scope and requests through its
    /// [`ScopeLayer`](crate::ScopeLayer)s run at once (one budget for both): tasks wait
    /// (cancellably) for a turn, a [`ScopeService`](crate::ScopeService)'s `poll_ready`
    /// waits for a permit. At least 1 and at most tokio's `Semaphore::MAX_PERMITS`.
    /// Default: no limit.
    pub limit: Option<usize>,
    /// Cancels the scope this long after it is built (saturating: a huge timeout means
    /// never). Building it outside a Tokio runtime is a `ConfigError` (field `timeout`).
    /// Default: no timeout.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub timeout: Option<Duration>,
}

impl ScopeConfig {
    /// Checks every option.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `limit` when it is zero or above tokio's
    /// `Semaphore::MAX_PERMITS`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(n) = self.limit {
            ensure(n >= 1, "limit", "must be at least 1")?;
            ensure(n <= Semaphore::MAX_PERMITS, "limit", "must be at most Semaphore::MAX_PERMITS")?;
        }
        Ok(())
    }
}

/// Builds a [`Scope`]: its name and a [`ScopeConfig`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use palisade_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade_core::ConfigError> {
/// let root = Scope::builder("jobs").limit(4).build()?;
/// let batch = Scope::builder("batch").timeout(Duration::from_secs(5)).detached_from(&root)?;
/// tokio::time::sleep(Duration::from_secs(6)).await;
/// assert!(batch.is_cancelled() && !root.is_cancelled());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ScopeBuilder {
    name: Arc<str>,
    config: ScopeConfig,
}

impl ScopeBuilder {
    pub(super) fn new(name: Arc<str>) -> Self {
        Self { name, config: ScopeConfig::default() }
    }

    /// Replaces every option with `config` (read from a file, say).
    pub fn config(mut self, config: ScopeConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`ScopeConfig::limit`].
    pub fn limit(mut self, n: usize) -> Self {
        self.config.limit = Some(n);
        self
    }

    /// Sets [`ScopeConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    fn finish(
        self,
        token: CancellationToken,
        closing: CancellationToken,
        parent: Option<Scope>,
    ) -> Result<Scope, ConfigError> {
        self.config.validate()?;
        let limit = self.config.limit.map(|n| Arc::new(Semaphore::new(n)));
        if let Some(timeout) = self.config.timeout {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                ConfigError::new("timeout", "a scope with a timeout must be built inside a Tokio runtime")
            })?;
            let t = token.clone();
            let deadline = deadline_from_now(timeout);
            // Not a task of the scope: it ends with the scope's cancellation.
            runtime.spawn(async move {
                if t.run_until_cancelled(tokio::time::sleep_until(deadline)).await.is_some() {
                    t.cancel();
                }
            });
        }
        Ok(Scope::raw(self.name, token, closing, limit, parent))
    }

    /// A root scope.
    ///
    /// # Errors
    ///
    /// As [`ScopeConfig::validate`]; `timeout` outside a Tokio runtime.
    pub fn build(self) -> Result<Scope, ConfigError> {
        self.finish(CancellationToken::new(), CancellationToken::new(), None)
    }

    /// A child of `parent`: cancelled with it, drained by its close, sees its resources.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn child_of(self, parent: &Scope) -> Result<Scope, ConfigError> {
        let child = self.finish(
            parent.inner.token.child_token(),
            parent.inner.closing.child_token(),
            Some(parent.clone()),
        )?;
        parent.adopt(&child);
        Ok(child)
    }

    /// A detached child of `parent`: cancelled with it, nothing more (its own timeout, not
    /// drained by the parent's close, does not see the parent's resources).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn detached_from(self, parent: &Scope) -> Result<Scope, ConfigError> {
        self.finish(parent.inner.token.child_token(), CancellationToken::new(), None)
    }
}
