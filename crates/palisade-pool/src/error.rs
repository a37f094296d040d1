//! Every error the pool and the provider selection return besides palisade-core's
//! rejections ([`Overloaded`](palisade_core::rejection::Overloaded) when the queue is full,
//! [`Closed`](palisade_core::rejection::Closed) after shutdown) and the members' own errors.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use palisade_core::panic::payload_message;

/// User code run by a pool panicked: a member's `poll_ready`, `call` or response future
/// (component `"member"`, site `"poll_ready"`, `"call"` or `"response"`), a health check
/// (component `"health check"`, site `"health_check"`), or the `MakeService` (component
/// `"make service"`, site `"make"`).
///
/// The pool catches the panic, answers the request involved with this error (evicting the
/// member) and goes on; the panic never reaches the pool's worker task or other callers.
///
/// ```
/// use palisade_pool::error::Panicked;
/// use palisade_core::BoxError;
///
/// fn is_panic(err: &BoxError) -> bool {
///     err.is::<Panicked>()
/// }
/// # let _ = is_panic;
/// ```
pub use palisade_core::panic::Panicked;

/// The error for a panic of user code: `component` of the pool `name` panicked at `site`.
pub(crate) fn panicked(
    component: &'static str,
    name: Arc<str>,
    site: &'static str,
    payload: &(dyn Any + Send),
) -> Panicked {
    Panicked::new(component, name, payload_message(payload)).with_site(site)
}

/// A [`Select`](crate::provider::Select) had no provider to try: none discovered, or none
/// passed the filter.
///
/// ```
/// use palisade_pool::error::NoProvider;
/// let err = NoProvider::new("llm");
/// assert_eq!(err.to_string(), "`llm` has no provider to try");
/// ```
#[derive(Clone, Debug)]
pub struct NoProvider {
    name: Arc<str>,
}

impl NoProvider {
    /// The selection `name` had no provider.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The selection's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for NoProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` has no provider to try", self.name)
    }
}

impl std::error::Error for NoProvider {}
