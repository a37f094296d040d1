//! [`Unkeyed`]: what a keyed layer does with a request its key function gives no key for, and
//! `WarnOnce`, the warning it logs the first time.

use std::sync::atomic::{AtomicBool, Ordering};

/// What a keyed layer does with a request whose key function answered `None` (for example an
/// axum server started without `into_make_service_with_connect_info`, so `ConnectInfo` is
/// missing). Every keyed layer's builder sets it with `.when_unkeyed(…)`; whatever is chosen,
/// the layer logs one warning (see `WarnOnce`) the first time it happens.
///
/// In a `serde` config (feature `serde`): `"reject"`, `"pass_through"` or `"shared"`.
///
/// ```
/// use palisade_core::keyed::Unkeyed;
/// assert_eq!(Unkeyed::default(), Unkeyed::Reject);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Unkeyed {
    /// Refuse the request with the typed
    /// [`KeyMissing`](crate::rejection::KeyMissing) rejection (HTTP 500, gRPC INTERNAL: a
    /// missing key is a deployment mistake, not the client's). The default.
    #[default]
    Reject,
    /// Let the request through unlimited: the keyed layer does nothing for it.
    PassThrough,
    /// Put every unkeyed request under one shared state (one bucket, one compartment, one
    /// breaker), as if they all had the same key.
    Shared,
}

/// Logs the "request without a key" warning once per layer instance.
///
/// A keyed layer keeps one `WarnOnce` in the state its clones share (behind its `Arc`), so
/// the warning appears once per layer, not once per request or per clone.
///
/// ```
/// use palisade_core::keyed::WarnOnce;
///
/// let warn = WarnOnce::new();
/// assert!(warn.warn_unkeyed("per-ip"));  // logs a `tracing::warn!` (target `palisade`)
/// assert!(!warn.warn_unkeyed("per-ip")); // already said: silent
/// assert!(warn.has_warned());
/// ```
#[derive(Debug, Default)]
#[doc(hidden)] // sibling crates only: `palisade_core::__private`
pub struct WarnOnce {
    warned: AtomicBool,
}

impl WarnOnce {
    /// Nothing said yet.
    pub const fn new() -> Self {
        Self { warned: AtomicBool::new(false) }
    }

    /// Logs (target `palisade`, level WARN, field `name`) that the keyed layer `name` got a
    /// request without a key, the first time only; `true` when this call logged.
    pub fn warn_unkeyed(&self, name: &str) -> bool {
        // A relaxed load first keeps the common (already warned) path free of writes.
        if self.warned.load(Ordering::Relaxed) || self.warned.swap(true, Ordering::Relaxed) {
            return false;
        }
        tracing::warn!(
            target: "palisade",
            name,
            "keyed layer got a request its key function gave no key for; it is handled as \
             the layer's `when_unkeyed` says (default: rejected with KeyMissing). Logged once \
             per layer"
        );
        true
    }

    /// `true` once the warning was logged.
    pub fn has_warned(&self) -> bool {
        self.warned.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_reject() {
        assert_eq!(Unkeyed::default(), Unkeyed::Reject);
    }

    #[test]
    fn warns_once_across_threads() {
        let warn = std::sync::Arc::new(WarnOnce::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let warn = warn.clone();
                std::thread::spawn(move || (0..100).filter(|_| warn.warn_unkeyed("k")).count())
            })
            .collect();
        let logged: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(logged, 1);
        assert!(warn.has_warned());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_names() {
        for (value, json) in [
            (Unkeyed::Reject, r#""reject""#),
            (Unkeyed::PassThrough, r#""pass_through""#),
            (Unkeyed::Shared, r#""shared""#),
        ] {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(serde_json::from_str::<Unkeyed>(json).unwrap(), value);
        }
        assert!(serde_json::from_str::<Unkeyed>(r#""PassThrough""#).is_err());
    }
}
