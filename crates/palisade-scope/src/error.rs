//! Errors of the scope crate: how scoped work ends when its scope refuses or stops it.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use palisade_core::rejection::Closed;

/// The scope `name` was cancelled while this request or task was running: its inner future
/// was dropped (so the work it was doing stopped) and it ended with this error.
///
/// Its [`source`](Error::source) is a palisade-core [`Closed`] rejection, so
/// [`find_rejection`](palisade_core::rejection::find_rejection) (and with it palisade's HTTP
/// rejection layer, which answers `503 Service Unavailable`) treats a cancelled request like
/// one refused by a closed service, while `err.is::<Cancelled>()` still tells the two apart.
///
/// # Example
///
/// ```
/// use palisade_core::rejection::{find_rejection, RejectionKind};
/// use palisade_core::BoxError;
/// use palisade_scope::error::Cancelled;
///
/// let err: BoxError = Cancelled::new("server").into();
/// assert!(err.is::<Cancelled>());
/// assert_eq!(find_rejection(err.as_ref()).map(|r| r.kind()), Some(RejectionKind::Closed));
/// ```
#[derive(Clone, Debug)]
pub struct Cancelled {
    closed: Closed,
}

impl Cancelled {
    /// Work of the scope `name` was cancelled.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { closed: Closed::new(name) }
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        self.closed.name()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope `{}` was cancelled", self.closed.name())
    }
}

impl Error for Cancelled {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.closed)
    }
}

/// A task spawned in a scope (component `"task"`, the scope's name) or a poller's poll
/// (component `"poll"`) panicked: palisade-core's [`Panicked`], the one error for user code
/// that panicked on palisade's tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade_scope::{error::Panicked, Scope};
///
/// let scope = Scope::new("jobs");
/// let err = scope.spawn(async { panic!("boom") }).await.unwrap_err();
/// let panicked = err.downcast_ref::<Panicked>().unwrap();
/// assert_eq!((panicked.component(), panicked.name(), panicked.message()), ("task", "jobs", "boom"));
/// # }
/// ```
pub use palisade_core::panic::Panicked;
