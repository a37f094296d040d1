//! [`FallbackConfig`]: every option of a fallback, its default and its validation.

use palisade_core::config::{ensure, ConfigError};

/// Which inner answers start the fallback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum TriggerOn {
    /// Failures of the inner service (per the classifier) and palisade rejections.
    #[default]
    FailuresAndRejections,
    /// Only failures of the inner service itself: errors that are not palisade rejections,
    /// and responses the classifier judges failures.
    Failures,
    /// Only palisade rejections (an open breaker, a full bulkhead, a rate limit, …); the
    /// inner service's own errors pass through.
    Rejections,
}

impl TriggerOn {
    pub(crate) const fn failures(self) -> bool {
        matches!(self, Self::FailuresAndRejections | Self::Failures)
    }

    pub(crate) const fn rejections(self) -> bool {
        matches!(self, Self::FailuresAndRejections | Self::Rejections)
    }
}

/// The settings of a [`FallbackLayer`](crate::FallbackLayer): the storage of
/// [`FallbackBuilder`](crate::FallbackBuilder) and the form a settings file takes (feature
/// `serde`). The provider is code: add it to the builder [`into_builder`](Self::into_builder)
/// gives.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_core::BoxError;
/// use palisade_fallback::{FallbackConfig, FallbackContext};
///
/// let config: FallbackConfig =
///     serde_json::from_str(r#"{ "name": "prices", "trigger_on": "rejections" }"#).unwrap();
/// let layer = config
///     .into_builder()
///     .fallback_fn(|_: FallbackContext<(), u32>| async { Ok::<_, BoxError>(0) })
///     .build()?;
/// assert_eq!(layer.handle().name(), "prices");
/// # }
/// # Ok::<_, palisade_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct FallbackConfig {
    /// The layer's name, in events and metric labels. Default `"fallback"`; must not be
    /// empty.
    pub name: String,
    /// Which inner answers start the fallback: `"failures_and_rejections"` (default),
    /// `"failures"` or `"rejections"`.
    pub trigger_on: TriggerOn,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self { name: "fallback".to_owned(), trigger_on: TriggerOn::default() }
    }
}

impl FallbackConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` when it is empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")
    }

    /// A builder holding these settings (validated by its `build`), to add the provider, a
    /// classifier and listeners.
    pub fn into_builder(self) -> crate::FallbackBuilder {
        crate::FallbackBuilder::from_config(self)
    }
}
