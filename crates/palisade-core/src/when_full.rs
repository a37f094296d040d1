//! [`WhenFull`]: what a caller does when a limit has no room — the one vocabulary of every
//! limit (rate limit, bulkhead, adaptive limit, pool, resource pool).
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::WhenFull;
//!
//! assert_eq!(WhenFull::default(), WhenFull::Refuse);
//! assert!(!WhenFull::Refuse.waits());
//! assert_eq!(WhenFull::Refuse.max_wait(), Duration::ZERO);
//!
//! let wait = WhenFull::wait(Duration::from_secs(2));
//! assert!(wait.waits());
//! assert_eq!(wait.max_wait(), Duration::from_secs(2));
//! ```
//!
//! In a `serde` config (feature `serde`) it reads and writes as `"refuse"` or
//! `{ wait = "2s" }` (TOML) / `{"wait":"2s"}` (JSON), the duration as in
//! [`duration`](crate::duration).

use std::time::Duration;

/// What a caller does when a limit has no room for it.
///
/// Each limit says, in its docs, which typed rejection it answers with and what else bounds
/// the wait (a `max_queue`, for example).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Refuse at once with the pattern's typed rejection (the default: as Resilience4j's
    /// bulkhead with `maxWaitDuration = 0`).
    #[default]
    Refuse,
    /// Wait up to `max_wait` for room, then refuse with the pattern's typed rejection.
    ///
    /// `Duration::MAX` (or any duration too large to add to the clock) waits without bound in
    /// practice: deadlines saturate at about 30 years (see [`time`](crate::time)). A zero
    /// `max_wait` behaves as [`Refuse`](Self::Refuse).
    Wait {
        /// The longest a caller waits for room.
        max_wait: Duration,
    },
}

impl WhenFull {
    /// [`WhenFull::Wait`] up to `max_wait`.
    pub const fn wait(max_wait: Duration) -> Self {
        Self::Wait { max_wait }
    }

    /// The longest a caller waits: [`Duration::ZERO`] for [`Refuse`](Self::Refuse).
    pub const fn max_wait(&self) -> Duration {
        match self {
            Self::Refuse => Duration::ZERO,
            Self::Wait { max_wait } => *max_wait,
        }
    }

    /// `true` when a caller may wait at all (a [`Wait`](Self::Wait) with a non-zero bound).
    pub const fn waits(&self) -> bool {
        !self.max_wait().is_zero()
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::WhenFull;

    /// The file form: `"refuse"` or `{ wait = "2s" }`.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Repr {
        Refuse,
        Wait(#[serde(with = "crate::duration::serde")] Duration),
    }

    impl Serialize for WhenFull {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match *self {
                Self::Refuse => Repr::Refuse,
                Self::Wait { max_wait } => Repr::Wait(max_wait),
            }
            .serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for WhenFull {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(match Repr::deserialize(d)? {
                Repr::Refuse => Self::Refuse,
                Repr::Wait(max_wait) => Self::Wait { max_wait },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors() {
        assert_eq!(WhenFull::default(), WhenFull::Refuse);
        assert_eq!(WhenFull::Refuse.max_wait(), Duration::ZERO);
        assert!(!WhenFull::Refuse.waits());
        let w = WhenFull::wait(Duration::from_millis(250));
        assert_eq!(w, WhenFull::Wait { max_wait: Duration::from_millis(250) });
        assert_eq!(w.max_wait(), Duration::from_millis(250));
        assert!(w.waits());
        assert!(!WhenFull::wait(Duration::ZERO).waits());
        assert_eq!(WhenFull::wait(Duration::MAX).max_wait(), Duration::MAX);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip() {
        let cases = [
            (WhenFull::Refuse, r#""refuse""#),
            (WhenFull::wait(Duration::from_secs(2)), r#"{"wait":"2s"}"#),
            (WhenFull::wait(Duration::from_millis(1500)), r#"{"wait":"1s500ms"}"#),
        ];
        for (value, json) in cases {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(serde_json::from_str::<WhenFull>(json).unwrap(), value);
        }
        assert_eq!(
            serde_json::from_str::<WhenFull>(r#"{"wait":"1h 30m"}"#).unwrap(),
            WhenFull::wait(Duration::from_secs(5400))
        );
        let max = WhenFull::wait(Duration::MAX);
        let back: WhenFull = serde_json::from_str(&serde_json::to_string(&max).unwrap()).unwrap();
        assert_eq!(back, max);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_refuses_bad_forms() {
        for bad in [
            r#""wait""#,
            r#"{"wait":2}"#,
            r#"{"wait":"soon"}"#,
            r#""Refuse""#,
            r#"{"refuse":null,"wait":"1s"}"#,
        ] {
            assert!(serde_json::from_str::<WhenFull>(bad).is_err(), "{bad} was accepted");
        }
        let err = serde_json::from_str::<WhenFull>(r#"{"wait":2}"#).unwrap_err().to_string();
        assert!(err.contains("duration string"), "{err}");
    }
}
