#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! A breaker on the `quanta` clock: its time window follows that clock, not tokio's.
#![cfg(feature = "quanta")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState, Clock};
use support::{backend, send, FAIL, OK};
use tower::Layer;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_time_window_on_a_quanta_clock_follows_that_clock() {
    let (clock, mock) = quanta::Clock::mock();
    let layer = CircuitBreakerLayer::builder()
        .failure_count(2, Duration::from_secs(10))
        .clock(Clock::from_quanta(clock))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, FAIL).await.unwrap_err();
    // tokio's clock moving changes nothing ...
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(handle.snapshot().window_failures, 1);
    // ... the quanta clock ages the failure out.
    mock.increment(Duration::from_secs(11));
    assert_eq!(handle.snapshot().window_failures, 0);
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
}
