#![allow(dead_code)]

use palisade_bulkhead::{BulkheadFull, BulkheadFullReason, Overloaded};
use palisade_core::BoxError;

/// The bulkhead refusal reason inside `err`, if it is one.
pub(crate) fn reason(err: &BoxError) -> Option<BulkheadFullReason> {
    err.downcast_ref::<BulkheadFull>().map(BulkheadFull::reason)
}

pub(crate) fn is_overloaded(err: &BoxError) -> bool {
    err.is::<Overloaded>()
}

/// A service answering `(key, n)` with `n` once `gate` is notified (each call waits for its
/// own notification), and the gate.
pub(crate) fn gated<K: Send + 'static>() -> (
    std::sync::Arc<tokio::sync::Notify>,
    impl tower::Service<(K, u32), Response = u32, Error = std::convert::Infallible, Future = impl Send> + Clone,
) {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let svc = tower::service_fn(move |(_, n): (K, u32)| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok::<_, std::convert::Infallible>(n)
        }
    });
    (gate, svc)
}
