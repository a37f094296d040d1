//! The config-file form of [`Backoff`] (feature `serde`).
//!
//! In a config file (feature `serde`): `{"fixed": {"delay": "100ms"}}`,
//! `{"linear": {"initial": "100ms", "step": "50ms"}}`,
//! `{"exponential": {"base": "100ms", "multiplier": 2.0}}` (multiplier optional, default 2)
//! or `{"fibonacci": {"base": "10ms"}}`. A [`Backoff::Custom`] is code and has no config
//! form: writing one out is an error.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Backoff;

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Form {
    Fixed {
        #[serde(with = "palisade_core::duration::serde")]
        delay: Duration,
    },
    Linear {
        #[serde(with = "palisade_core::duration::serde")]
        initial: Duration,
        #[serde(with = "palisade_core::duration::serde")]
        step: Duration,
    },
    Exponential {
        #[serde(with = "palisade_core::duration::serde")]
        base: Duration,
        #[serde(default = "two")]
        multiplier: f64,
    },
    Fibonacci {
        #[serde(with = "palisade_core::duration::serde")]
        base: Duration,
    },
}

fn two() -> f64 {
    2.0
}

impl Serialize for Backoff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let form = match *self {
            Backoff::Fixed(delay) => Form::Fixed { delay },
            Backoff::Linear { initial, step } => Form::Linear { initial, step },
            Backoff::Exponential { base, multiplier } => Form::Exponential { base, multiplier },
            Backoff::Fibonacci { base } => Form::Fibonacci { base },
            Backoff::Custom(_) => {
                return Err(serde::ser::Error::custom("a custom backoff is code and has no config form"))
            }
        };
        form.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Backoff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Form::deserialize(d)? {
            Form::Fixed { delay } => Backoff::Fixed(delay),
            Form::Linear { initial, step } => Backoff::Linear { initial, step },
            Form::Exponential { base, multiplier } => Backoff::Exponential { base, multiplier },
            Form::Fibonacci { base } => Backoff::Fibonacci { base },
        })
    }
}
