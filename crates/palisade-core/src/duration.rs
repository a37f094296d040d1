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
///
/// The arithmetic is exact decimal (no floating point): `"0.1s"` is exactly 100 ms and
/// `"18446744073709551615s"` is exactly `u64::MAX` seconds; digits finer than a nanosecond are
/// truncated. Never panics, whatever the input.
///
/// # Errors
///
/// A [`ParseDurationError`] naming the input when it is empty, a part has no number or no
/// unit, a number is malformed (`"1.2.3s"`, a sign, an exponent), a unit is unknown, or the
/// total does not fit in a [`Duration`] (more than `u64::MAX` seconds) — such a value is
/// refused rather than silently shortened. Durations that fit but are too long to add to a
/// clock (`"100000000000d"`) are accepted: palisade's layers saturate them to "effectively
/// never" (see [`time`](crate::time)).
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |reason| ParseDurationError { input: input.to_owned(), reason };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| err("missing unit"))?;
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_nanos: u128 = match rest[..unit_len].trim() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" | "secs" => NANOS_PER_SEC,
            "m" | "min" | "mins" => 60 * NANOS_PER_SEC,
            "h" | "hr" | "hrs" => 3_600 * NANOS_PER_SEC,
            "d" => 86_400 * NANOS_PER_SEC,
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        let nanos = decimal_times(number, unit_nanos).map_err(err)?;
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| err("out of range"))?;
    }
    let secs = u64::try_from(total_nanos / NANOS_PER_SEC).map_err(|_| err("out of range"))?;
    // The remainder is below 10^9, so it fits in a u32.
    let subsec = (total_nanos % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, subsec))
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// `number × unit_nanos` for a decimal `number` (`"12"`, `"1.5"`, `".5"`, `"2."`), exactly,
/// truncated to whole nanoseconds.
fn decimal_times(number: &str, unit_nanos: u128) -> Result<u128, &'static str> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return Err("bad number");
    }
    let mut nanos: u128 = 0;
    for digit in int.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit - b'0')))
            .ok_or("out of range")?;
    }
    let mut nanos = nanos.checked_mul(unit_nanos).ok_or("out of range")?;
    // Fraction digits past the 14th cannot reach a whole nanosecond (the largest unit, a day,
    // is 8.64e13 ns), so 18 digits are plenty; `frac_value * unit_nanos` stays below 10^32.
    let mut frac_value: u128 = 0;
    let mut scale: u128 = 1;
    for digit in frac.bytes().take(18) {
        frac_value = frac_value * 10 + u128::from(digit - b'0');
        scale *= 10;
    }
    nanos = nanos.checked_add(frac_value * unit_nanos / scale).ok_or("out of range")?;
    Ok(nanos)
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
