#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! ConfigError, validation helpers and human durations for serde configs.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ordered, ensure_ratio, ConfigError};
use palisade_core::duration::{format_duration, parse_duration};

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
fn in_section_prefixes_the_field_path() {
    let e = ConfigError::new("max_attempts", "must be at least 1").in_section("retry");
    assert_eq!(e.field(), "retry.max_attempts");
    assert_eq!(e.rule(), "must be at least 1");
    assert_eq!(e.conflicting_field(), None);
    let e = e.in_section("payments").in_section("policies");
    assert_eq!(e.field(), "policies.payments.retry.max_attempts");
    assert_eq!(e.to_string(), "invalid `policies.payments.retry.max_attempts`: must be at least 1");
    assert_eq!(e.clone().in_section(""), e, "an empty prefix changes nothing");
    assert_eq!(ConfigError::new("", "bad").in_section("retry").field(), "retry");
}

#[test]
fn conflicts_name_both_fields() {
    let e = ConfigError::conflict("count_window", "time_window", "set only one sliding window");
    assert_eq!(e.field(), "count_window");
    assert_eq!(e.conflicting_field(), Some("time_window"));
    assert_eq!(e.to_string(), "conflicting `count_window` and `time_window`: set only one sliding window");
    let e = e.in_section("breaker");
    assert_eq!((e.field(), e.conflicting_field()), ("breaker.count_window", Some("breaker.time_window")));
    assert_ne!(e, ConfigError::new("breaker.count_window", "set only one sliding window"));
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

#[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
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

/// humantime's own `test_units`, `test_combo` and doc cases, with its numbers (issue 18.5).
#[test]
#[allow(clippy::unreadable_literal)] // humantime's numbers, as written there
fn humantime_units_and_combinations() {
    let cases: &[(&str, Duration)] = &[
        ("17nsec", Duration::new(0, 17)),
        ("17nanos", Duration::new(0, 17)),
        ("33ns", Duration::new(0, 33)),
        ("3usec", Duration::new(0, 3000)),
        ("78us", Duration::new(0, 78000)),
        ("163µs", Duration::new(0, 163000)),
        ("31msec", Duration::new(0, 31_000_000)),
        ("31millis", Duration::new(0, 31_000_000)),
        ("6ms", Duration::new(0, 6_000_000)),
        ("3000s", Duration::new(3000, 0)),
        ("300sec", Duration::new(300, 0)),
        ("300secs", Duration::new(300, 0)),
        ("50seconds", Duration::new(50, 0)),
        ("1second", Duration::new(1, 0)),
        ("100m", Duration::new(6000, 0)),
        ("12min", Duration::new(720, 0)),
        ("12mins", Duration::new(720, 0)),
        ("1minute", Duration::new(60, 0)),
        ("7minutes", Duration::new(420, 0)),
        ("2h", Duration::new(7200, 0)),
        ("7hr", Duration::new(25200, 0)),
        ("7hrs", Duration::new(25200, 0)),
        ("1hour", Duration::new(3600, 0)),
        ("24hours", Duration::new(86400, 0)),
        ("1day", Duration::new(86400, 0)),
        ("2days", Duration::new(172_800, 0)),
        ("365d", Duration::new(31_536_000, 0)),
        ("1week", Duration::new(604_800, 0)),
        ("7weeks", Duration::new(4_233_600, 0)),
        ("52w", Duration::new(31_449_600, 0)),
        ("1month", Duration::new(2_630_016, 0)),
        ("3months", Duration::new(3 * 2_630_016, 0)),
        ("12M", Duration::new(31_560_192, 0)),
        ("1year", Duration::new(31_557_600, 0)),
        ("7years", Duration::new(7 * 31_557_600, 0)),
        ("17y", Duration::new(536_479_200, 0)),
        // test_combo and the doc example
        ("20 min 17 nsec ", Duration::new(1200, 17)),
        ("2h 15m", Duration::new(8100, 0)),
        ("2h 37min", Duration::new(9420, 0)),
        ("32ms", Duration::new(0, 32_000_000)),
        // the issue's forms
        ("2 seconds", Duration::from_secs(2)),
        ("1w", Duration::from_secs(604_800)),
        ("1h 30m", Duration::from_secs(5400)),
        ("1 min", Duration::from_secs(60)),
        ("1.5 hours", Duration::from_secs(5400)),
        ("18446744073709551615ns", Duration::from_nanos(u64::MAX)),
    ];
    for &(input, want) in cases {
        assert_eq!(parse_duration(input), Ok(want), "{input:?}");
    }
    for (bad, reason) in [
        ("1S", "unknown unit"),
        ("1 m s", "unknown unit"),
        ("1 2s", "missing unit"),
        ("2 sec onds", "unknown unit"),
    ] {
        let e = parse_duration(bad).unwrap_err();
        assert!(e.to_string().contains(reason), "{bad:?}: {e}");
        assert!(e.to_string().contains("expected e.g. \"250ms\""), "{bad:?}: {e}");
    }
}

#[test]
fn format_duration_writes_the_compact_form() {
    for (d, want) in [
        (Duration::ZERO, "0s"),
        (Duration::from_millis(250), "250ms"),
        (Duration::from_secs(2), "2s"),
        (Duration::from_secs(5400), "1h30m"),
        (Duration::from_secs(604_800), "7d"),
        (Duration::new(90_061, 1_001_001), "1d1h1m1s1ms1us1ns"),
        (Duration::from_nanos(1), "1ns"),
        (Duration::MAX, "213503982334601d7h15s999ms999us999ns"),
    ] {
        assert_eq!(format_duration(d), want, "{d:?}");
        assert_eq!(parse_duration(want), Ok(d), "{want}");
    }
}

#[test]
fn serde_durations_refuse_bare_numbers_with_an_example() {
    for json in [r#"{"wait":250}"#, r#"{"wait":1.5}"#, r#"{"wait":"1s","timeout":5}"#] {
        let e = serde_json::from_str::<Cfg>(json).unwrap_err().to_string();
        assert!(e.contains(r#"expected a duration string such as "250ms" or "2s""#), "{json}: {e}");
    }
}

#[test]
fn serde_durations_serialize_back_to_the_same_form() {
    let c: Cfg = serde_json::from_str(r#"{"wait":"1h 30m","timeout":"250 ms"}"#).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, r#"{"wait":"1h30m","timeout":"250ms"}"#);
    assert_eq!(serde_json::from_str::<Cfg>(&json).unwrap(), c);
    let c = Cfg { wait: Duration::MAX, timeout: None };
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, r#"{"wait":"213503982334601d7h15s999ms999us999ns","timeout":null}"#);
    assert_eq!(serde_json::from_str::<Cfg>(&json).unwrap(), c);
}

mod fuzz {
    //! Extreme and arbitrary inputs: the helpers and the parser answer, never panic.

    use std::time::Duration;

    use palisade_core::config::{ensure_nonzero_duration, ensure_ordered, ensure_ratio, ConfigError};
    use palisade_core::duration::{format_duration, parse_duration};
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
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
            let cfg = super::Cfg { wait: d, timeout: Some(d) };
            let json = serde_json::to_string(&cfg).unwrap();
            prop_assert_eq!(serde_json::from_str::<super::Cfg>(&json).unwrap(), cfg);
        }

        #[test]
        fn huge_numbers_in_every_unit(n in any::<u128>(), unit in prop::sample::select(vec![
            ("ns", 1u128), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
            ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
            ("w", 604_800_000_000_000), ("M", 2_630_016_000_000_000), ("y", 31_557_600_000_000_000),
            (" seconds", 1_000_000_000), (" nanos", 1),
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
