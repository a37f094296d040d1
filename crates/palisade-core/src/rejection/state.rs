//! Refusals by a layer's state: an open breaker, a deadline passed, a closed service, a
//! request without a key.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Rejection, RejectionKind};

/// The circuit breaker `name` is open; it will let a trial call through after `retry_after`.
///
/// A keyed breaker says which key's breaker refused ([`key`](Self::key)); a breaker opened by
/// hand (forced open: Polly's *isolated* circuit) says so with
/// [`is_isolated`](Self::is_isolated), so a client can tell an operator's decision from a
/// failing backend. Both are still a `CircuitOpen`.
#[derive(Clone, Debug)]
pub struct CircuitOpen {
    name: Arc<str>,
    retry_after: Duration,
    key: Option<Arc<str>>,
    isolated: bool,
}

impl CircuitOpen {
    /// A rejection by the breaker `name`, which will try again after `retry_after`.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Duration) -> Self {
        Self { name: name.into(), retry_after, key: None, isolated: false }
    }

    /// The same rejection, by the breaker of `key` in a keyed layer (the key as text).
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same rejection, by a breaker isolated (forced open) by hand.
    #[must_use]
    pub fn with_isolated(mut self, isolated: bool) -> Self {
        self.isolated = isolated;
        self
    }

    /// Time until the breaker lets a trial call through.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For a keyed breaker, the key whose breaker refused (e.g. the host), as text.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// `true` when the breaker was forced open by hand (isolated) rather than opened by
    /// failures; it stays open until someone closes it.
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}`", self.name)?;
        if let Some(key) = &self.key {
            write!(f, " for key `{key}`")?;
        }
        if self.isolated {
            write!(f, " is isolated (forced open); retry after {:?}", self.retry_after)
        } else {
            write!(f, " is open; retry after {:?}", self.retry_after)
        }
    }
}

rejection_impl!(CircuitOpen, CircuitOpen, |s: &CircuitOpen| Some(s.retry_after));

/// The layer `name` gave up on the call after `after`.
#[derive(Clone, Debug)]
pub struct TimedOut {
    name: Arc<str>,
    after: Duration,
}

impl TimedOut {
    /// A timeout by the layer `name` after `after`.
    pub fn new(name: impl Into<Arc<str>>, after: Duration) -> Self {
        Self { name: name.into(), after }
    }

    /// How long the call was allowed.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` timed out after {:?}", self.name, self.after)
    }
}

rejection_impl!(TimedOut, TimedOut, |_: &TimedOut| None);

/// The service or pool `name` is shut down and takes no more calls.
#[derive(Clone, Debug)]
pub struct Closed {
    name: Arc<str>,
}

impl Closed {
    /// A rejection by the closed service `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is closed", self.name)
    }
}

rejection_impl!(Closed, Closed, |_: &Closed| None);

/// The keyed layer `name` refused a request because its key function gave no key for it
/// (see [`Unkeyed`](crate::keyed::Unkeyed)). Its kind is [`RejectionKind::KeyMissing`]:
/// HTTP 500 and gRPC INTERNAL, since the request is fine and the deployment is not (a
/// missing `ConnectInfo`, a header a proxy should have set). Retrying does not help.
///
/// ```
/// use palisade_core::rejection::{find_rejection, KeyMissing, RejectionKind};
/// use palisade_core::BoxError;
///
/// let err: BoxError = KeyMissing::new("per-ip").into();
/// assert_eq!(find_rejection(err.as_ref()).map(|r| r.kind()), Some(RejectionKind::KeyMissing));
/// assert_eq!(err.to_string(), "keyed layer `per-ip` got a request without a key");
/// ```
#[derive(Clone, Debug)]
pub struct KeyMissing {
    name: Arc<str>,
}

impl KeyMissing {
    /// A refusal by the keyed layer `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for KeyMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keyed layer `{}` got a request without a key", self.name)
    }
}

rejection_impl!(KeyMissing, KeyMissing, |_: &KeyMissing| None);
