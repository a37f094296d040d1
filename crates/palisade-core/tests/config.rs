#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! ConfigError, validation helpers and human durations for serde configs.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ordered, ensure_ratio, ConfigError};
use palisade_core::duration::parse_duration;

#[test]
fn config_errors_name_field_and_rule() {
    let e = ensure_ratio("failure_rate_threshold", 1.5).unwrap_err();
    assert_eq!(e.field(), "failure_rate_threshold");
    assert_eq!(e.to_string(), "invalid `failure_rate_threshold`: must be a number from 0.0 to 1.0");
    assert!(ensure_ratio("r", f64::NAN).is_err());
    assert!(ensure_ratio("r", 0.0).is_ok() && ensure_ratio("r", 1.0).is_ok());
    let e = ensure_nonzero_duration("wait", Duration::ZERO).unwrap_err();
    assert_eq!(e.rule(), "must be greater than zero");
    let e = ensure_ordered("min", 10, "max", 5).unwrap_err();
    assert_eq!(e.to_string(), "invalid `min`: must not be greater than `max`");
    assert!(ensure_ordered("min", 5, "max", 5).is_ok());
    assert_eq!(ensure(false, "x", "y"), Err(ConfigError::new("x", "y")));
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(ConfigError::new("x", "y"));
    assert_eq!(boxed.to_string(), "invalid `x`: y");
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("1h2m3s").unwrap(), Duration::from_secs(3723));
    assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
    assert_eq!(parse_duration(" 2s ").unwrap(), Duration::from_secs(2));
    for bad in ["", "10", "ms", "1x", "1.2.3s", "-1s", "1e999s"] {
        let e = parse_duration(bad).unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{bad:?}: {e}");
    }
}

#[derive(serde::Deserialize, Debug)]
struct Cfg {
    #[serde(with = "palisade_core::duration::serde")]
    wait: Duration,
    #[serde(default, with = "palisade_core::duration::serde::option")]
    timeout: Option<Duration>,
}

#[test]
fn serde_durations() {
    let c: Cfg = serde_json::from_str(r#"{"wait":"1.5s","timeout":"100ms"}"#).unwrap();
    assert_eq!(c.wait, Duration::from_millis(1500));
    assert_eq!(c.timeout, Some(Duration::from_millis(100)));
    let c: Cfg = serde_json::from_str(r#"{"wait":"1m"}"#).unwrap();
    assert_eq!(c.timeout, None);
    let e = serde_json::from_str::<Cfg>(r#"{"wait":"soon"}"#).unwrap_err();
    assert!(e.to_string().contains("invalid duration `soon`"), "{e}");
}

#[test]
fn durations_parse_exactly_and_refuse_what_does_not_fit() {
    // Exact decimal arithmetic: no float rounding.
    assert_eq!(parse_duration("0.1s").unwrap(), Duration::from_millis(100));
    assert_eq!(parse_duration("1.000000001s").unwrap(), Duration::new(1, 1));
    assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2.ms").unwrap(), Duration::from_millis(2));
    assert_eq!(parse_duration("1.0000000009s").unwrap(), Duration::new(1, 0), "sub-ns truncated");
    assert_eq!(
        parse_duration("123456789012345678ns").unwrap(),
        Duration::from_nanos(123_456_789_012_345_678)
    );
    assert_eq!(parse_duration("18446744073709551615s").unwrap(), Duration::from_secs(u64::MAX));
    assert_eq!(
        parse_duration("18446744073709551615s999999999ns").unwrap(),
        Duration::MAX,
        "the largest Duration parses"
    );
    // The serde config of issue 15 kind 1: fits in a Duration (the layers saturate it).
    assert_eq!(
        parse_duration("200000000000000d").unwrap(),
        Duration::from_secs(200_000_000_000_000 * 86_400)
    );
    for (bad, reason) in [
        ("18446744073709551616s", "out of range"),
        ("18446744073709551615s1s", "out of range"),
        ("300000000000000d", "out of range"),
        ("99999999999999999999999999999999999999999999999999ns", "out of range"),
        (".s", "bad number"),
        ("1..5s", "bad number"),
        ("1.2.3s", "bad number"),
        ("1e3s", "unknown unit"),
        ("s1", "expected a number"),
        ("5", "missing unit"),
    ] {
        let e = parse_duration(bad).unwrap_err();
        assert!(e.to_string().contains(reason), "{bad:?}: {e}");
        assert!(e.to_string().contains(bad), "{bad:?}: {e}");
    }
}

mod fuzz {
    //! Extreme and arbitrary inputs: the helpers and the parser answer, never panic.

    use std::time::Duration;

    use palisade_core::config::{ensure_nonzero_duration, ensure_ordered, ensure_ratio, ConfigError};
    use palisade_core::duration::parse_duration;
    use proptest::prelude::*;

    fn extreme_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            Just(1.0),
            Just(f64::MIN_POSITIVE),
            Just(f64::EPSILON),
            Just(1.0 + f64::EPSILON),
            Just(f64::MAX),
            Just(f64::MIN),
            any::<f64>(),
            -2.0..2.0f64,
        ]
    }

    fn extreme_duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            Just(Duration::MAX),
            Just(Duration::from_secs(u64::MAX)),
            (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
            any::<u64>().prop_map(Duration::from_nanos),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn ratio_accepts_exactly_the_finite_unit_interval(r in extreme_f64()) {
            let res = ensure_ratio("ratio", r);
            prop_assert_eq!(res.is_ok(), (0.0..=1.0).contains(&r), "{}", r);
            if let Err(e) = res {
                prop_assert_eq!(e.field(), "ratio");
            }
        }

        #[test]
        fn nonzero_duration_refuses_only_zero(d in extreme_duration()) {
            prop_assert_eq!(ensure_nonzero_duration("wait", d).is_ok(), !d.is_zero());
        }

        #[test]
        fn ordered_refuses_nan_and_inversions(a in extreme_f64(), b in extreme_f64()) {
            let res = ensure_ordered("min", a, "max", b);
            prop_assert_eq!(res.is_ok(), a <= b);
            if let Err(e) = res {
                prop_assert_eq!(e, ConfigError::new("min", "must not be greater than `max`"));
            }
        }

        #[test]
        fn ordered_durations(a in extreme_duration(), b in extreme_duration()) {
            prop_assert_eq!(ensure_ordered("min", a, "max", b).is_ok(), a <= b);
        }

        #[test]
        fn any_string_parses_or_errors(s in "\\PC{0,40}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn duration_like_strings_parse_or_error(
            s in "[0-9.]{0,45}(ns|us|µs|ms|s|m|h|d|x| )?([0-9.]{0,30}(ns|ms|s|d))?",
        ) {
            if let Err(e) = parse_duration(&s) {
                prop_assert!(e.to_string().contains("invalid duration"), "{}", e);
            }
        }

        #[test]
        fn serde_durations_answer_or_refuse(s in "[0-9.]{0,45}(ns|ms|s|m|h|d)?|\\PC{0,20}") {
            let json = serde_json::json!({ "wait": s, "timeout": s }).to_string();
            match serde_json::from_str::<super::Cfg>(&json) {
                Ok(cfg) => prop_assert_eq!(Ok(cfg.wait), parse_duration(&s)),
                Err(e) => prop_assert!(e.to_string().contains("invalid duration"), "{}", e),
            }
        }

        #[test]
        fn every_duration_round_trips(d in extreme_duration()) {
            prop_assert_eq!(parse_duration(&format!("{}ns", d.as_nanos())).unwrap(), d);
            prop_assert_eq!(parse_duration(&format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())).unwrap(), d);
            prop_assert_eq!(parse_duration(&format!("{}s{}ns", d.as_secs(), d.subsec_nanos())).unwrap(), d);
        }

        #[test]
        fn huge_numbers_in_every_unit(n in any::<u128>(), unit in prop::sample::select(vec![
            ("ns", 1u128), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
            ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
        ])) {
            let (suffix, unit_nanos) = unit;
            let res = parse_duration(&format!("{n}{suffix}"));
            match n.checked_mul(unit_nanos).filter(|&total| total <= Duration::MAX.as_nanos()) {
                Some(total) => prop_assert_eq!(res.unwrap().as_nanos(), total),
                None => prop_assert!(res.unwrap_err().to_string().contains("out of range")),
            }
        }
    }
}
