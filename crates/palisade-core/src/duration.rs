//! Human-readable durations: `"250ms"`, `"1.5s"`, `"1h 30m"`, `"2 seconds"`, `"1w"`.
//!
//! [`parse_duration`] accepts what [`humantime`](https://docs.rs/humantime) accepts (same unit
//! names, spaces allowed between numbers and units and between parts) plus decimal fractions
//! (`"1.5s"`); [`format_duration`] writes the compact form back (`"1h30m"`, `"250ms"`), and the
//! two round-trip exactly. The `serde` configs use both through [`serde`] with
//! `#[serde(with = "palisade_core::duration::serde")]`; bare numbers are refused so that a
//! config never guesses the unit.
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::duration::{format_duration, parse_duration};
//!
//! assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
//! assert_eq!(parse_duration("2 seconds"), Ok(Duration::from_secs(2)));
//! assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86_400)));
//! assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
//! assert!(parse_duration("250").is_err());
//! assert!(parse_duration("fast").is_err());
//! assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
//! ```

use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (expected e.g. \"250ms\", \"2s\", \"1h 30m\")")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

/// Parses a duration made of one or more `<number><unit>` parts, optionally separated by
/// whitespace (`"1h30m"`, `"1h 30m"`, `"2 seconds"`). Numbers may have a fraction (`"1.5s"`).
///
/// The units are humantime's (case-sensitive: `M` is a month, `m` a minute):
///
/// | unit | spellings |
/// |------|-----------|
/// | nanosecond | `ns`, `nsec`, `nanos` |
/// | microsecond | `us`, `µs`, `usec` |
/// | millisecond | `ms`, `msec`, `millis` |
/// | second | `s`, `sec`, `secs`, `second`, `seconds` |
/// | minute | `m`, `min`, `mins`, `minute`, `minutes` |
/// | hour | `h`, `hr`, `hrs`, `hour`, `hours` |
/// | day | `d`, `day`, `days` |
/// | week (7 days) | `w`, `week`, `weeks` |
/// | month (30.44 days = 2 630 016 s, as humantime) | `M`, `month`, `months` |
/// | year (365.25 days = 31 557 600 s, as humantime) | `y`, `year`, `years` |
///
/// Deviation from humantime: fractions are accepted and sums are not limited to `u64`
/// nanoseconds for sub-second units (`"18446744073709551615ns"` is exact).
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
        let unit = rest[..unit_len].trim();
        if unit.is_empty() {
            return Err(err("missing unit"));
        }
        let unit_nanos = unit_nanos(unit).ok_or_else(|| err("unknown unit"))?;
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

/// humantime's unit table, in nanoseconds.
fn unit_nanos(unit: &str) -> Option<u128> {
    let secs = match unit {
        "ns" | "nsec" | "nanos" => return Some(1),
        "us" | "µs" | "usec" => return Some(1_000),
        "ms" | "msec" | "millis" => return Some(1_000_000),
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        "M" | "month" | "months" => 2_630_016,
        "y" | "year" | "years" => 31_557_600,
        _ => return None,
    };
    Some(secs * NANOS_PER_SEC)
}

/// Writes `d` in the compact form [`parse_duration`] reads back exactly: days, hours,
/// minutes, seconds, milliseconds, microseconds and nanoseconds, zero parts left out, no
/// spaces (`"1h30m"`, `"250ms"`, `"1d2h3m4s5ms6us7ns"`); zero is `"0s"`. Days are the largest
/// unit written, since weeks, months and years would make a value harder to read back at a
/// glance.
///
/// ```
/// use std::time::Duration;
/// use palisade_core::duration::{format_duration, parse_duration};
///
/// assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
/// assert_eq!(format_duration(Duration::from_secs(90_061)), "1d1h1m1s");
/// assert_eq!(format_duration(Duration::ZERO), "0s");
/// let d = Duration::new(3_723, 4_005_006);
/// assert_eq!(format_duration(d), "1h2m3s4ms5us6ns");
/// assert_eq!(parse_duration(&format_duration(d)), Ok(d));
/// ```
pub fn format_duration(d: Duration) -> String {
    use std::fmt::Write;

    if d.is_zero() {
        return "0s".to_owned();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let mut out = String::new();
    for (value, unit) in parts {
        if value > 0 {
            // Writing to a String cannot fail.
            let _ = write!(out, "{value}{unit}");
        }
    }
    out
}

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
    // Fraction digits past the 17th cannot reach a whole nanosecond (the largest unit, a year,
    // is 3.16e16 ns), so 18 digits are plenty; `frac_value * unit_nanos` stays below 10^35.
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
///
/// Deserializing accepts what [`parse_duration`] accepts; anything that is not a string (a
/// bare number in TOML or JSON) is refused with "expected a duration string such as "250ms"
/// or "2s"". Serializing writes [`format_duration`]'s compact form, which reads back exactly.
///
/// ```
/// use std::time::Duration;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Cfg {
///     #[serde(with = "palisade_core::duration::serde")]
///     wait: Duration,
/// }
///
/// let cfg: Cfg = serde_json::from_str(r#"{"wait":"1h 30m"}"#).unwrap();
/// assert_eq!(cfg.wait, Duration::from_secs(5400));
/// assert_eq!(serde_json::to_string(&cfg).unwrap(), r#"{"wait":"1h30m"}"#);
/// let e = serde_json::from_str::<Cfg>(r#"{"wait":250}"#).unwrap_err();
/// assert!(e.to_string().contains(r#"expected a duration string such as "250ms" or "2s""#));
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod serde {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};

    const EXPECTING: &str = "a duration string such as \"250ms\" or \"2s\"";

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTING)
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            super::parse_duration(s).map_err(E::custom)
        }
    }

    /// A `Duration` read through [`DurationVisitor`], for `Option<_>`.
    struct Human(Duration);

    impl<'de> Deserialize<'de> for Human {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(DurationVisitor).map(Human)
        }
    }

    /// Deserializes a `Duration` from a string like `"250ms"` or `"1h 30m"`.
    ///
    /// # Errors
    ///
    /// The deserializer's error when the value is not a string ("expected a duration string
    /// such as …") or does not parse (the [`ParseDurationError`](super::ParseDurationError)).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    /// Serializes a `Duration` as [`format_duration`](super::format_duration)'s compact string
    /// (`"1h30m"`, `"250ms"`).
    ///
    /// # Errors
    ///
    /// The serializer's own errors only.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// `Option<Duration>` as an optional human string.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Deserializes an `Option<Duration>` from an optional string like `"250ms"`.
        ///
        /// # Errors
        ///
        /// As [`deserialize`](super::deserialize), for a present value.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Ok(<Option<super::Human>>::deserialize(d)?.map(|h| h.0))
        }

        /// Serializes an `Option<Duration>`: `None` as the format's none, `Some` as
        /// [`serialize`](super::serialize) does.
        ///
        /// # Errors
        ///
        /// The serializer's own errors only.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&super::super::format_duration(*d)),
                None => s.serialize_none(),
            }
        }
    }
}
