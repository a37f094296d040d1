//! Shared helpers for the breaker's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_circuit_breaker::error::CircuitOpen;
use palisade_circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerEvent};
use palisade_core::BoxError;
use tower::{Service, ServiceExt};

/// What the test backend does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub fail: bool,
    pub delay: Duration,
}

pub const OK: Call = Call { fail: false, delay: Duration::ZERO };
pub const FAIL: Call = Call { fail: true, delay: Duration::ZERO };

pub fn slow(delay: Duration) -> Call {
    Call { fail: false, delay }
}

/// A backend that sleeps `delay` then answers as told; counts the calls that reached it.
pub fn backend(
    hits: Arc<AtomicUsize>,
) -> impl Service<
    Call,
    Response = (),
    Error = &'static str,
    Future = impl std::future::Future<Output = Result<(), &'static str>> + Send,
> + Clone
       + Send {
    tower::service_fn(move |call: Call| {
        hits.fetch_add(1, Ordering::SeqCst);
        async move {
            if !call.delay.is_zero() {
                tokio::time::sleep(call.delay).await;
            }
            if call.fail {
                Err("boom")
            } else {
                Ok(())
            }
        }
    })
}

/// Sends one call through a clone of `svc`.
pub async fn send<S>(svc: &S, call: Call) -> Result<(), BoxError>
where
    S: Service<Call, Response = (), Error = BoxError> + Clone,
{
    svc.clone().oneshot(call).await
}

/// The breaker's rejection in `result`, if it is one.
pub fn rejection(result: &Result<(), BoxError>) -> Option<&CircuitOpen> {
    result.as_ref().err().and_then(|e| e.downcast_ref::<CircuitOpen>())
}

/// Records every event a builder's breaker publishes.
pub fn recorder<C>(
    builder: CircuitBreakerBuilder<C>,
) -> (CircuitBreakerBuilder<C>, Arc<Mutex<Vec<CircuitBreakerEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (builder.on_event(move |e| sink.lock().unwrap().push(e.clone())), events)
}

/// Sends one call through `svc`, owned (for spawning).
pub async fn send_owned<S>(svc: S, call: Call) -> Result<(), BoxError>
where
    S: Service<Call, Response = (), Error = BoxError>,
{
    svc.oneshot(call).await
}
