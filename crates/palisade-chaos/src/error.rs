//! The error a chaos layer injects when no fault generator is given.
//!
//! A generator or predicate (`fault_with`, `outcome_with`, `latency_with`, `inject_when`)
//! that panics answers its call with palisade's one error for panicking user code,
//! [`Panicked`] (component `"hook"`, the layer's name, the hook as its site); it is
//! re-exported here.

use std::fmt;
use std::sync::Arc;

pub use palisade_core::panic::Panicked;

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

/// Runs user code `f` (a generator or the predicate), its panic's message as `Err`.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| palisade_core::panic::payload_message(&*p).to_owned())
}
