//! Policies from one config file: a [`Registry`] of named stacks (feature `registry`).
//!
//! A policies file has a `[policies.<name>]` table per policy and, in it, an optional
//! section per pattern — each the pattern's own `XConfig`, every field optional, unknown
//! fields refused ([`PolicyConfig`]):
//!
//! ```toml
//! [policies.payments.bulkhead]
//! max_concurrent = 32
//!
//! [policies.payments.timeout]
//! timeout = "2s"
//!
//! [policies.payments.retry]
//! max_attempts = 3
//!
//! [policies.payments.circuit_breaker]
//! consecutive_failures = 5
//! wait_in_open = "10s"
//!
//! [policies.search.rate_limit]
//! quota = { limit = 100, period = "1s" }
//! ```
//!
//! [`Registry::layer`] gives a policy's stack as one tower `Layer` (layer order: the
//! README's, see [`PolicyConfig`]); [`Registry::handles`] and [`Registry::snapshot`] show
//! every layer it built; [`Registry::reload`] applies a changed file at run time through the
//! handles where a pattern can change a setting live, and reports the rest.
//!
//! ```
//! use palisade::registry::Registry;
//! use palisade::BoxError;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let registry: Registry<u32, u32> = Registry::from_toml_str(r#"
//!     [policies.payments.bulkhead]
//!     max_concurrent = 32
//!     [policies.payments.retry]
//!     max_attempts = 3
//! "#)?;
//! let svc = registry.layer("payments")?.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
//! assert_eq!(svc.oneshot(1).await?, 2);
//!
//! // A bad field is named with its full path.
//! let err = Registry::<u32, u32>::from_toml_str("[policies.payments.retry]\nmax_attempts = 0").unwrap_err();
//! assert_eq!(err.field(), "policies.payments.retry.max_attempts");
//! # Ok(()) }
//! ```
//!
//! # One request type per registry
//!
//! A rate limit's layer and a chaos layer are typed by the request (and the chaos layer by
//! the response) their code sees, so a `Registry<Req, Res>` serves services of one request
//! and response type. Services of another type get a registry of their own (read the same
//! file again: its layers then have state of their own).

mod config;
mod handle;
mod policy;
mod reload;

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use palisade_core::sync::lock;
use palisade_core::ConfigError;
use serde::Deserializer;

pub use self::config::{PolicyConfig, RegistryConfig};
pub use self::handle::{NamedHandle, PatternHandle, PatternKind, PatternSnapshot, RegistrySnapshot};
pub use self::policy::PolicyLayer;
use self::policy::RateLimitHook;
pub use self::reload::{NotApplied, ReloadReport};
use crate::rate_limit::RateLimitBuilder;

/// Named policies built from one policies file; see the [module docs](self).
///
/// The registry owns each policy's state (permits, buckets, breakers, budgets): every
/// [`layer`](Self::layer) of a policy, and every service built from it, shares it.
pub struct Registry<Req, Res> {
    policies: BTreeMap<String, Policy<Req, Res>>,
}

struct Policy<Req, Res> {
    layer: PolicyLayer<Req, Res>,
    /// The settings the layers run with (the file, less what a reload could not apply).
    running: Mutex<PolicyConfig>,
}

impl<Req, Res> fmt::Debug for Registry<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("policies", &self.policies.keys().collect::<Vec<_>>()).finish()
    }
}

impl<Req: 'static, Res> Registry<Req, Res> {
    /// A builder, to add what a file cannot hold (a rate limit's key function) before the
    /// file is read.
    pub fn builder() -> RegistryBuilder<Req, Res> {
        RegistryBuilder { rate_limit: BTreeMap::new(), _types: PhantomData }
    }

    /// Builds every policy of `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with the full path of the bad field
    /// (`policies.payments.retry.max_attempts`); a conflict names both fields.
    pub fn from_config(config: RegistryConfig) -> Result<Self, ConfigError> {
        Self::builder().from_config(config)
    }

    fn assemble(config: RegistryConfig, hooks: &RegistryBuilder<Req, Res>) -> Result<Self, ConfigError> {
        let config = config.validated()?;
        let mut policies = BTreeMap::new();
        for (name, policy) in config.policies {
            let layer = policy::build(&name, &policy, hooks.rate_limit.get(&name))?;
            policies.insert(name, Policy { layer, running: Mutex::new(policy) });
        }
        Ok(Self { policies })
    }

    /// Reads a policies file from TOML text and builds it
    /// ([`RegistryConfig::from_toml_str`]).
    ///
    /// # Errors
    ///
    /// As [`from_config`](Self::from_config), and a TOML error with its path and line.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_config(RegistryConfig::from_toml_str(text)?)
    }

    /// Reads a policies file from any serde format (JSON, YAML…) and builds it
    /// ([`RegistryConfig::from_deserializer`]).
    ///
    /// # Errors
    ///
    /// As [`from_config`](Self::from_config); a format's error names the field's path.
    pub fn from_deserializer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, ConfigError> {
        Self::from_config(RegistryConfig::from_deserializer(deserializer)?)
    }

    /// The stack of policy `name`, as one tower `Layer` (see [`PolicyLayer`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `policies.<name>` when no policy has that name.
    pub fn layer(&self, name: &str) -> Result<PolicyLayer<Req, Res>, ConfigError> {
        if let Some(policy) = self.policies.get(name) {
            return Ok(policy.layer.clone());
        }
        let known: Vec<&str> = self.names().collect();
        Err(ConfigError::new(
            format!("policies.{name}"),
            format!("no policy has this name (the file has: {})", known.join(", ")),
        ))
    }

    /// The policies' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// Every layer's handle, with its policy and kind ([`NamedHandle::kind`]), policies in
    /// name order, each policy's layers outermost first.
    pub fn handles(&self) -> Vec<NamedHandle> {
        self.policies
            .iter()
            .flat_map(|(name, p)| {
                p.layer.handles().into_iter().map(move |handle| NamedHandle { policy: name.clone(), handle })
            })
            .collect()
    }

    /// Every layer's snapshot, per policy.
    pub fn snapshot(&self) -> RegistrySnapshot {
        let policies = self
            .policies
            .iter()
            .map(|(name, p)| (name.clone(), p.layer.handles().iter().map(PatternHandle::snapshot).collect()))
            .collect();
        RegistrySnapshot { policies }
    }

    /// Stops what the registry runs in the background and waits for it.
    ///
    /// The layers a policies file can describe (rate limit, bulkhead, adaptive limit,
    /// timeouts, retry, circuit breaker, chaos) run no task, worker or poller of their own: a registry builds
    /// no pool, process or poller (those need members that only code can make), so there is
    /// nothing to drain and this returns at once. It is here so that code written against a
    /// registry keeps its shutdown step when a future section does start tasks.
    #[allow(clippy::unused_async)]
    pub async fn shutdown_all(&self) {}

    /// Reads a changed policies file (TOML) and applies what can change at run time through
    /// the handles: a bulkhead's `max_concurrent`, `when_full` and `max_queue`; an adaptive
    /// limit's `initial_limit` (the limit is set to it), `min_limit` and `max_limit`; a rate
    /// limit's quotas (`quota`, a tier's `quota`, when its name is unique); a chaos layer's
    /// `enabled`, rates and `latency`. Every service already built obeys them at once. Anything else (a timeout,
    /// a retry or breaker setting, a name, an added or removed section or policy) is listed
    /// in [`ReloadReport::needs_rebuild`] and keeps running with its old value.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (with the field's full path) when the new file is invalid; then
    /// nothing changes.
    pub fn reload(&self, text: &str) -> Result<ReloadReport, ConfigError> {
        self.reload_config(RegistryConfig::from_toml_str(text)?)
    }

    /// [`reload`](Self::reload) from any serde format.
    ///
    /// # Errors
    ///
    /// As [`reload`](Self::reload).
    pub fn reload_from<'de, D: Deserializer<'de>>(
        &self,
        deserializer: D,
    ) -> Result<ReloadReport, ConfigError> {
        self.reload_config(RegistryConfig::from_deserializer(deserializer)?)
    }

    /// [`reload`](Self::reload) from a [`RegistryConfig`].
    ///
    /// # Errors
    ///
    /// As [`reload`](Self::reload).
    pub fn reload_config(&self, config: RegistryConfig) -> Result<ReloadReport, ConfigError> {
        let config = config.validated()?;
        let mut report = ReloadReport::default();
        for name in self.policies.keys() {
            if !config.policies.contains_key(name) {
                let field = format!("policies.{name}");
                report
                    .needs_rebuild
                    .push(NotApplied { field, reason: "policy removed: rebuild the registry".into() });
            }
        }
        for (name, new) in &config.policies {
            let Some(policy) = self.policies.get(name) else {
                let field = format!("policies.{name}");
                report
                    .needs_rebuild
                    .push(NotApplied { field, reason: "policy added: rebuild the registry".into() });
                continue;
            };
            let mut running = lock(&policy.running);
            reload::Reloader { prefix: format!("policies.{name}"), report: &mut report }.policy(
                &policy.layer,
                &mut running,
                new,
            );
        }
        Ok(report)
    }
}

/// Builds a [`Registry`] with code for what a file cannot hold, from
/// [`Registry::builder`].
///
/// ```
/// use palisade::registry::Registry;
/// use palisade::rejection::RateLimited;
/// use palisade::BoxError;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// // One request an hour per client, the client being the part before the `/`.
/// let registry = Registry::<&'static str, ()>::builder()
///     .rate_limit_with("api", |limit| limit.keyed(|req: &&'static str| req.split('/').next().map(str::to_owned)))
///     .from_toml_str("[policies.api.rate_limit]\nquota = { limit = 1, period = \"1h\" }")?;
/// let svc = registry.layer("api")?.layer(service_fn(|_: &'static str| async { Ok::<_, BoxError>(()) }));
/// svc.clone().oneshot("alice/orders").await?;
/// svc.clone().oneshot("bob/orders").await?;
/// assert!(svc.oneshot("alice/cart").await.unwrap_err().is::<RateLimited>());
/// # Ok(()) }
/// ```
pub struct RegistryBuilder<Req, Res> {
    rate_limit: BTreeMap<String, RateLimitHook<Req>>,
    _types: PhantomData<fn() -> Res>,
}

impl<Req, Res> fmt::Debug for RegistryBuilder<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("rate_limit_with", &self.rate_limit.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<Req: 'static, Res> RegistryBuilder<Req, Res> {
    /// Adds code to policy `policy`'s rate limit builder before it is built: a key function
    /// ([`RateLimitBuilder::keyed`]: the file's `quota`, `max_keys` and `when_unkeyed` then
    /// apply per key), a weigher, listeners, tiers with a condition. Ignored when the policy
    /// has no `rate_limit` section. A reload changes a keyed quota the same way (its tier is
    /// `"per_key"`).
    pub fn rate_limit_with<F>(mut self, policy: &str, f: F) -> Self
    where
        F: Fn(RateLimitBuilder<Req>) -> RateLimitBuilder<Req> + Send + Sync + 'static,
    {
        self.rate_limit.insert(policy.to_owned(), Arc::new(f));
        self
    }

    /// Builds every policy of `config` (see [`Registry::from_config`]).
    ///
    /// # Errors
    ///
    /// As [`Registry::from_config`].
    pub fn from_config(self, config: RegistryConfig) -> Result<Registry<Req, Res>, ConfigError> {
        Registry::assemble(config, &self)
    }

    /// Reads TOML and builds it (see [`Registry::from_toml_str`]).
    ///
    /// # Errors
    ///
    /// As [`Registry::from_toml_str`].
    pub fn from_toml_str(self, text: &str) -> Result<Registry<Req, Res>, ConfigError> {
        self.from_config(RegistryConfig::from_toml_str(text)?)
    }

    /// Reads any serde format and builds it (see [`Registry::from_deserializer`]).
    ///
    /// # Errors
    ///
    /// As [`Registry::from_deserializer`].
    pub fn from_deserializer<'de, D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Registry<Req, Res>, ConfigError> {
        self.from_config(RegistryConfig::from_deserializer(deserializer)?)
    }
}
