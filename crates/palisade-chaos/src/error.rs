//! The error a chaos layer injects when no fault generator is given, and the one it answers
//! when a generator or predicate panics.

use std::fmt;
use std::sync::Arc;

/// A fault injected by the chaos layer `name` (the default injected error).
///
/// It is not a palisade rejection: it stands for a failure of the service behind the layer.
#[derive(Clone, Debug)]
pub struct InjectedFault {
    name: Arc<str>,
}

impl InjectedFault {
    /// A fault injected by the layer `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The chaos layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fault injected by chaos layer `{}`", self.name)
    }
}

impl std::error::Error for InjectedFault {}

/// A generator or predicate of the chaos layer `name` (`fault_with`, `outcome_with`,
/// `latency_with`, `inject_when`) panicked on a call: that call is answered with this error
/// (the inner service is not called) and the layer goes on.
#[derive(Clone, Debug)]
pub struct ChaosHookPanicked {
    name: Arc<str>,
    message: Arc<str>,
}

impl ChaosHookPanicked {
    pub(crate) fn new(name: Arc<str>, message: impl Into<Arc<str>>) -> Self {
        Self { name, message: message.into() }
    }

    /// The chaos layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ChaosHookPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a generator of chaos layer `{}` panicked: {}", self.name, self.message)
    }
}

impl std::error::Error for ChaosHookPanicked {}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs user code `f`, its panic's message as `Err`.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// An event listener whose panic is logged (target `palisade`) instead of unwinding into the
/// call that published the event.
pub(crate) fn guard_listener<E: 'static>(
    listener: impl Fn(&E) + Send + Sync + 'static,
) -> impl Fn(&E) + Send + Sync + 'static {
    move |event: &E| {
        if let Err(message) = catch(|| listener(event)) {
            tracing::warn!(target: "palisade", %message, "a chaos event listener panicked");
        }
    }
}
