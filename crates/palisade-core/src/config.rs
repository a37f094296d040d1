//! [`ConfigError`]: what every palisade builder returns for invalid settings.
//!
//! ```
//! use palisade_core::config::{ensure, ConfigError};
//!
//! fn check(max_attempts: u32) -> Result<(), ConfigError> {
//!     ensure(max_attempts >= 1, "max_attempts", "must be at least 1")
//! }
//! let err = check(0).unwrap_err();
//! assert_eq!(err.field(), "max_attempts");
//! assert_eq!(err.to_string(), "invalid `max_attempts`: must be at least 1");
//! ```

use std::borrow::Cow;
use std::time::Duration;

/// A setting broke a rule; names the field (its full path in a nested config) and the rule.
///
/// A conflict between two settings names both ([`ConfigError::conflict`]). A caller that
/// nests a config under a key adds its prefix with [`ConfigError::in_section`], so the error
/// names the full path a user writes in the file:
///
/// ```
/// use palisade_core::ConfigError;
///
/// let err = ConfigError::new("max_attempts", "must be at least 1")
///     .in_section("retry")
///     .in_section("policies.payments");
/// assert_eq!(err.field(), "policies.payments.retry.max_attempts");
/// assert_eq!(err.to_string(), "invalid `policies.payments.retry.max_attempts`: must be at least 1");
///
/// let err = ConfigError::conflict("sliding_window", "time_window", "set one window only")
///     .in_section("breaker");
/// assert_eq!(err.field(), "breaker.sliding_window");
/// assert_eq!(err.conflicting_field(), Some("breaker.time_window"));
/// assert_eq!(
///     err.to_string(),
///     "conflicting `breaker.sliding_window` and `breaker.time_window`: set one window only"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    /// The second field of a conflict.
    other: Option<Cow<'static, str>>,
    rule: Cow<'static, str>,
}

impl ConfigError {
    /// `field` broke `rule`.
    pub fn new(field: impl Into<Cow<'static, str>>, rule: impl Into<Cow<'static, str>>) -> Self {
        Self { field: field.into(), other: None, rule: rule.into() }
    }

    /// `field_a` and `field_b` cannot be set together as they are; `rule` says why.
    pub fn conflict(
        field_a: impl Into<Cow<'static, str>>,
        field_b: impl Into<Cow<'static, str>>,
        rule: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self { field: field_a.into(), other: Some(field_b.into()), rule: rule.into() }
    }

    /// The same error for a config nested under `prefix`: the field (and the conflicting
    /// field) become `prefix.field`. Nests: the outermost caller adds its prefix last. An
    /// empty `prefix` changes nothing.
    #[must_use]
    pub fn in_section(mut self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        self.field = nest(prefix, &self.field);
        self.other = self.other.map(|other| nest(prefix, &other));
        self
    }

    /// The field (builder method or config key, with its section path) that is wrong; for a
    /// conflict, the first of the two.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// For a conflict ([`ConfigError::conflict`]), the second field.
    pub fn conflicting_field(&self) -> Option<&str> {
        self.other.as_deref()
    }

    /// The rule it broke.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

/// `prefix.field` (just `prefix` for an empty field).
fn nest(prefix: &str, field: &str) -> Cow<'static, str> {
    if field.is_empty() {
        Cow::Owned(prefix.to_owned())
    } else {
        Cow::Owned(format!("{prefix}.{field}"))
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.other {
            None => write!(f, "invalid `{}`: {}", self.field, self.rule),
            Some(other) => write!(f, "conflicting `{}` and `{other}`: {}", self.field, self.rule),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `Ok(())` when `cond` holds, otherwise a [`ConfigError`] for `field` and `rule`.
pub fn ensure(
    cond: bool,
    field: impl Into<Cow<'static, str>>,
    rule: impl Into<Cow<'static, str>>,
) -> Result<(), ConfigError> {
    if cond {
        Ok(())
    } else {
        Err(ConfigError::new(field, rule))
    }
}

/// Checks that a duration is not zero.
pub fn ensure_nonzero_duration(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    ensure(!d.is_zero(), field, "must be greater than zero")
}

/// Checks that a ratio is a finite number within `0.0..=1.0`.
pub fn ensure_ratio(field: &'static str, r: f64) -> Result<(), ConfigError> {
    ensure(r.is_finite() && (0.0..=1.0).contains(&r), field, "must be a number from 0.0 to 1.0")
}

/// Checks `min <= max` for a pair of fields.
pub fn ensure_ordered<T: PartialOrd + Copy>(
    min_field: &'static str,
    min: T,
    max_field: &'static str,
    max: T,
) -> Result<(), ConfigError> {
    ensure(min <= max, min_field, format!("must not be greater than `{max_field}`"))
}
