//! The error a chaos layer injects when no fault generator is given.

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
