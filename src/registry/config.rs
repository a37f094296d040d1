//! The file form of a registry: [`RegistryConfig`] and [`PolicyConfig`], loaded from any serde
//! format, with errors that name the full path of the bad field.

use std::collections::BTreeMap;

use palisade_core::ConfigError;
use serde::{Deserialize, Deserializer, Serialize};

use crate::bulkhead::adaptive::AdaptiveLimitConfig;
use crate::bulkhead::BulkheadConfig;
use crate::chaos::ChaosConfig;
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::rate_limit::RateLimitConfig;
use crate::retry::RetryConfig;
use crate::timeout::TimeoutConfig;

/// A policies file: `[policies.<name>]` tables, each a [`PolicyConfig`]. Unknown keys are
/// refused, at every level.
///
/// ```
/// use palisade::registry::RegistryConfig;
///
/// let config = RegistryConfig::from_toml_str(r#"
///     [policies.payments.retry]
///     max_attempts = 3
/// "#)?;
/// assert_eq!(config.policies["payments"].retry.as_ref().map(|r| r.max_attempts), Some(3));
///
/// let err = RegistryConfig::from_toml_str("[policies.payments.retry]\nmax_attempts = 0").unwrap_err();
/// assert_eq!(err.field(), "policies.payments.retry.max_attempts");
/// # Ok::<_, palisade::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The policies by name.
    pub policies: BTreeMap<String, PolicyConfig>,
}

/// One policy: an optional section per pattern, each the pattern's own `XConfig` (every
/// field optional, unknown fields refused). The stack is built in the README's layer order,
/// outermost first: `rate_limit`, `bulkhead`, `adaptive_limit`, `timeout` (total), `retry`,
/// `circuit_breaker`, `attempt_timeout` (per attempt, inside the breaker), `chaos` (next to
/// the service, where a failing backend would be).
///
/// A section whose `name` is left out takes the policy's name (`attempt_timeout`:
/// `"<policy>.attempt"`), so that events and metric labels tell policies apart.
///
/// What a file cannot express is not here: a fallback needs its provider (code), pools and
/// processes need the members they make, keyed limits need a key function (and an adaptive
/// limit's `partitions` a `partition_by`: a file that sets them is refused at
/// `adaptive_limit.partition_by`). Build those with
/// the pattern's builder (its `XConfig::into_builder` reads the same section) and stack them
/// next to [`Registry::layer`](super::Registry::layer).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// The rate limit (a global quota and tiers; see [`RateLimitConfig`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// The bulkhead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulkhead: Option<BulkheadConfig>,
    /// The adaptive concurrency limit (default classifier), inside the bulkhead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_limit: Option<AdaptiveLimitConfig>,
    /// The total timeout, across every retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutConfig>,
    /// The retry (default classifier: `Err` is a retryable failure; `Req: Clone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// The circuit breaker (default classifier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// The per-attempt timeout, inside the breaker: a hung attempt becomes a failure the
    /// breaker counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_timeout: Option<TimeoutConfig>,
    /// Fault injection next to the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosConfig>,
}

impl RegistryConfig {
    /// Reads a policies file from TOML text.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the full path of the bad field
    /// (`policies.payments.retry.max_attempts`): an unknown key, a value of the wrong type, or
    /// a value a pattern's `validate` refuses. A TOML syntax error names the key path reached
    /// (or `file`) and gives the line.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| toml_error(text, &e, ""))?;
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = path_of(&e);
            toml_error(text, e.inner(), &path)
        })?;
        config.validated()
    }

    /// Reads a policies file from any serde format: a `serde_json::Deserializer`, a YAML
    /// deserializer, a `serde_json::Value`… The error names the full path of the bad field,
    /// the format's message is the rule.
    ///
    /// ```
    /// use palisade::registry::RegistryConfig;
    ///
    /// let json = r#"{ "policies": { "db": { "bulkhead": { "max_concurrent": 0 } } } }"#;
    /// let err = RegistryConfig::from_deserializer(&mut serde_json::Deserializer::from_str(json)).unwrap_err();
    /// assert_eq!(err.field(), "policies.db.bulkhead.max_concurrent");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str).
    pub fn from_deserializer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, ConfigError> {
        let config: Self = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| ConfigError::new(path_of(&e), e.inner().to_string()))?;
        config.validated()
    }

    /// Gives each section without a name its policy's name, then checks every section
    /// (`XConfig::validate`, plus what only building the layer checks), each error under
    /// `policies.<name>.<section>`.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, with its full path.
    pub fn validated(mut self) -> Result<Self, ConfigError> {
        for (name, policy) in &mut self.policies {
            policy.name_sections(name);
            super::policy::build::<(), ()>(name, policy, None)?;
        }
        Ok(self)
    }
}

impl PolicyConfig {
    /// Names every section still called by its pattern's default name after the policy.
    fn name_sections(&mut self, policy: &str) {
        fn rename(name: &mut String, default: &str, to: &str) {
            if name == default {
                to.clone_into(name);
            }
        }
        if let Some(c) = &mut self.rate_limit {
            rename(&mut c.name, &RateLimitConfig::default().name, policy);
        }
        if let Some(c) = &mut self.bulkhead {
            rename(&mut c.name, &BulkheadConfig::default().name, policy);
        }
        if let Some(c) = &mut self.adaptive_limit {
            rename(&mut c.name, &AdaptiveLimitConfig::default().name, policy);
        }
        if let Some(c) = &mut self.timeout {
            rename(&mut c.name, &TimeoutConfig::default().name, policy);
        }
        if let Some(c) = &mut self.retry {
            rename(&mut c.name, &RetryConfig::default().name, policy);
        }
        if let Some(c) = &mut self.circuit_breaker {
            rename(&mut c.name, &CircuitBreakerConfig::default().name, policy);
        }
        if let Some(c) = &mut self.attempt_timeout {
            rename(&mut c.name, &TimeoutConfig::default().name, &format!("{policy}.attempt"));
        }
        if let Some(c) = &mut self.chaos {
            rename(&mut c.name, &ChaosConfig::default().name, policy);
        }
    }
}

/// The path serde_path_to_error tracked, `file` when it tracked none.
fn path_of<E>(e: &serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path == "." {
        "file".to_owned()
    } else {
        path
    }
}

/// A TOML error as a [`ConfigError`]: the path, toml's message and the line it points at.
fn toml_error(text: &str, e: &toml::de::Error, path: &str) -> ConfigError {
    let field = if path.is_empty() { "file" } else { path };
    let rule = match e.span() {
        Some(span) => {
            let line = text.get(..span.start).map_or(0, |before| before.matches('\n').count()) + 1;
            format!("{} (line {line})", e.message().trim_end())
        }
        None => e.message().trim_end().to_owned(),
    };
    ConfigError::new(field.to_owned(), rule)
}
