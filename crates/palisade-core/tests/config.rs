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
