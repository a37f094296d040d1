#![allow(clippy::unwrap_used, missing_docs)]
//! The breaker's events as structured `tracing` fields (issue 18.4): `Event::fields`.

use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerEvent, CircuitState, TransitionReason};
use palisade_core::classify::Outcome;
use palisade_core::event::{Event, FieldValue};

fn fields(e: &CircuitBreakerEvent) -> Vec<(&'static str, FieldValue)> {
    let mut out = Vec::new();
    e.fields(&mut |k, v| out.push((k, v)));
    out
}

#[test]
fn a_transition_reports_from_to_reason_and_its_number() {
    let e = CircuitBreakerEvent::StateTransition {
        from: CircuitState::Closed,
        to: CircuitState::Open,
        reason: TransitionReason::FailureRate { rate: 0.5 },
        key: Some(Arc::from("tenant-7")),
    };
    assert_eq!(
        fields(&e),
        vec![
            ("from", "closed".into()),
            ("to", "open".into()),
            ("failure_rate", FieldValue::F64(0.5)),
            ("reason", "failure_rate".into()),
            ("key", "tenant-7".into()),
        ]
    );
    let e = CircuitBreakerEvent::StateTransition {
        from: CircuitState::Open,
        to: CircuitState::HalfOpen,
        reason: TransitionReason::RetryAfter { wait: Duration::from_millis(2500) },
        key: None,
    };
    assert_eq!(
        fields(&e),
        vec![
            ("from", "open".into()),
            ("to", "half_open".into()),
            ("retry_after_ms", FieldValue::U64(2500)),
            ("reason", "retry_after".into()),
        ]
    );
}

#[test]
fn rejections_and_recorded_calls_report_their_numbers() {
    let e = CircuitBreakerEvent::Rejected { retry_after: Duration::from_secs(30) };
    assert_eq!(fields(&e), vec![("retry_after_ms", FieldValue::U64(30_000))]);
    let e = CircuitBreakerEvent::Recorded {
        outcome: Outcome::Failure,
        slow: true,
        elapsed: Some(Duration::from_millis(1200)),
    };
    assert_eq!(
        fields(&e),
        vec![
            ("outcome", "failure".into()),
            ("slow", FieldValue::Bool(true)),
            ("elapsed_ms", FieldValue::U64(1200)),
        ]
    );
}
