//! Human-readable durations: `"250ms"`, `"1.5s"`, `"1m30s"`, `"2h"`.
//!
//! [`parse_duration`] is what the `serde` configs use (through [`serde`] with
//! `#[serde(with = "palisade_core::duration::serde")]`); bare numbers are refused so that a
//! config never guesses the unit.
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::duration::parse_duration;
//!
//! assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
//! assert!(parse_duration("250").is_err());
//! assert!(parse_duration("fast").is_err());
//! ```

use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (expected e.g. \"250ms\", \"1.5s\", \"1m30s\")")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

/// Parses a duration made of one or more `<number><unit>` parts; units are `ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`, `d`. Numbers may have a fraction.
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |reason| ParseDurationError { input: input.to_owned(), reason };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| err("missing unit"))?;
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match rest[..unit_len].trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err("unknown unit")),
        };
        total += value * secs;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err("out of range"))
}

/// `serde` support for `Duration` and `Option<Duration>` fields as human strings.
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Deserializes a `Duration` from a string like `"250ms"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    /// `Option<Duration>` as an optional human string.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer};

        /// Deserializes an `Option<Duration>` from an optional string like `"250ms"`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
            s.map(|s| super::super::parse_duration(&s).map_err(serde::de::Error::custom)).transpose()
        }
    }
}
