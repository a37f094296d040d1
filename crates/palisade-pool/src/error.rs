//! Errors the pools report for user code that failed in a way a `Result` cannot carry.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// User code run by a pool panicked: a member's `poll_ready`, `call` or response future, a
/// health check, or the `MakeService`.
///
/// The pool catches the panic, answers the request involved with this error (evicting the
/// member) and goes on; the panic never reaches the pool's
/// worker task or other callers.
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
#[derive(Clone, Debug)]
pub struct Panicked {
    name: Arc<str>,
    site: &'static str,
    message: Arc<str>,
}

impl Panicked {
    pub(crate) fn new(name: Arc<str>, site: &'static str, payload: &(dyn Any + Send)) -> Self {
        Self { name, site, message: panic_message(payload).into() }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the panic happened: `"call"`, `"poll_ready"`, `"response"`, `"health_check"`,
    /// `"make"`, `"create"`, `"recycle"` or `"destroy"`.
    pub fn site(&self) -> &'static str {
        self.site
    }

    /// The panic's message, when it was a string.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool `{}`: user code panicked in {}: {}", self.name, self.site, self.message)
    }
}

impl std::error::Error for Panicked {}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
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
