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

/// A setting broke a rule; names the field and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {rule}")]
pub struct ConfigError {
    field: Cow<'static, str>,
    rule: Cow<'static, str>,
}

impl ConfigError {
    /// `field` broke `rule`.
    pub fn new(field: impl Into<Cow<'static, str>>, rule: impl Into<Cow<'static, str>>) -> Self {
        Self { field: field.into(), rule: rule.into() }
    }

    /// The field (builder method or config key) that is wrong.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule it broke.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

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
