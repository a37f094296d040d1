#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(feature = "serde")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerConfig, CircuitState};
use support::{backend, send, FAIL};
use tower::Layer;

fn parse(json: &str) -> CircuitBreakerConfig {
    serde_json::from_str(json).unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_config_builds_the_breaker_it_describes() {
    let layer =
        parse(r#"{ "name": "db", "consecutive_failures": 2, "wait_in_open": "1.5s" }"#).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.name(), "db");
    assert_eq!(handle.snapshot().retry_after, Some(Duration::from_millis(1500)));
}

#[test]
fn contradictions_and_bad_values_are_refused() {
    let field = |json: &str| parse(json).build().unwrap_err().field().to_owned();
    assert_eq!(field(r#"{ "consecutive_failures": 3, "failure_rate": 0.5 }"#), "failure_rate");
    assert_eq!(field(r#"{ "failure_count": 3 }"#), "failure_count");
    assert_eq!(field(r#"{ "count_window": 10, "time_window": "10s" }"#), "count_window");
    assert_eq!(field(r#"{ "slow_call_duration": "1s" }"#), "slow_call_rate");
    assert_eq!(field(r#"{ "failure_rate": 2.0 }"#), "failure_rate");
    assert_eq!(field(r#"{ "wait_in_open": "10s", "max_wait_in_open": "1s" }"#), "max_wait_in_open");
    assert!(serde_json::from_str::<CircuitBreakerConfig>(r#"{ "wait_in_open": "10" }"#).is_err());
    assert!(serde_json::from_str::<CircuitBreakerConfig>(r#"{ "failure_rat": 0.5 }"#).is_err());
}

#[test]
fn a_config_written_out_reads_back_the_same() {
    // The config struct is the builder's storage and the file form: what a program writes
    // (every field, durations as text) a file loads unchanged.
    let mut config = CircuitBreakerConfig::default();
    config.name = "payments".into();
    config.failure_rate = Some(0.25);
    config.time_window = Some(Duration::from_millis(1500));
    config.slow_call_duration = Some(Duration::from_secs(2));
    config.slow_call_rate = Some(0.8);
    config.max_wait_in_open = Some(Duration::from_secs(120));
    config.wait_multiplier = 2.0;
    config.initial_state = CircuitState::ForcedOpen;
    config.when_unkeyed = palisade_circuit_breaker::Unkeyed::Shared;
    for config in [CircuitBreakerConfig::default(), config] {
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(parse(&text), config, "{text}");
        config.validate().unwrap();
    }
}
