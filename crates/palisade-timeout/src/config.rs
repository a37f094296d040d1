//! [`TimeoutConfig`]: every option of a timeout, its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};

/// The settings of a [`TimeoutLayer`](crate::TimeoutLayer): the storage of
/// [`TimeoutBuilder`](crate::TimeoutBuilder) and the form a settings file takes (feature
/// `serde`).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_timeout::TimeoutConfig;
///
/// let config: TimeoutConfig = serde_json::from_str(r#"{ "name": "db", "timeout": "250ms" }"#).unwrap();
/// let layer = config.build()?;
/// assert_eq!(layer.handle().name(), "db");
///
/// let zero: TimeoutConfig = serde_json::from_str(r#"{ "timeout": "0s" }"#).unwrap();
/// assert_eq!(zero.validate().unwrap_err().field(), "timeout");
/// # }
/// # Ok::<_, palisade_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// The layer's name, in the [`TimedOut`](crate::error::TimedOut) rejection, events and
    /// metric labels. Default `"timeout"`; must not be empty.
    pub name: String,
    /// How long one call may take. Default 1 s (Resilience4j's `TimeLimiter`
    /// `timeoutDuration`); must not be zero here (a zero in a settings file is a mistake,
    /// see [`TimeoutLayer::new`](crate::TimeoutLayer::new) for tower's meaning of zero). A
    /// huge value (`Duration::MAX`) saturates to "effectively never". Not used by a layer
    /// whose timeout is chosen [`per_request`](crate::TimeoutBuilder::per_request).
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub timeout: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self { name: "timeout".to_owned(), timeout: Duration::from_secs(1) }
    }
}

impl TimeoutConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` (empty) or `timeout` (zero).
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        ensure_nonzero_duration("timeout", self.timeout)
    }

    /// A builder holding these settings (validated by its `build`), to add listeners or a
    /// per-request timeout.
    pub fn into_builder(self) -> crate::TimeoutBuilder {
        crate::TimeoutBuilder::from_config(self)
    }

    /// Validates and builds a layer with this fixed timeout.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn build(self) -> Result<crate::TimeoutLayer, ConfigError> {
        self.into_builder().build()
    }
}
