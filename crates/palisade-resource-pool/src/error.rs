//! Every error a [`ResourcePool`](crate::ResourcePool) returns besides palisade-core's
//! rejections ([`TimedOut`] when a wait runs out,
//! [`Overloaded`](palisade_core::rejection::Overloaded) when
//! [`WhenFull::Refuse`](palisade_core::when_full::WhenFull::Refuse) finds no free place,
//! [`Closed`](palisade_core::rejection::Closed) after `close`) and the errors of `create`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::rejection::TimedOut;

/// A [`Lifecycle`](crate::Lifecycle) hook panicked (component `"hook"`, site `"create"`,
/// `"recycle"` or `"destroy"`): the `acquire` of a panicking `create` fails with it, a
/// resource whose `recycle` panicked is destroyed, a panicking `destroy` is logged.
pub use palisade_core::panic::Panicked;

/// The error [`lifecycle_fn`](crate::lifecycle_fn)'s health check reports for a resource it
/// refused (the resource is then destroyed).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("resource failed its recycle check")]
pub struct RecycleRefused;

/// A [`Lifecycle`](crate::Lifecycle) hook did not finish within its bound
/// ([`create_timeout`](crate::ResourcePoolConfig::create_timeout) for site `"create"`,
/// [`recycle_timeout`](crate::ResourcePoolConfig::recycle_timeout) for `"recycle"`,
/// [`destroy_timeout`](crate::ResourcePoolConfig::destroy_timeout) for `"destroy"`): the
/// hook's future was dropped and its place in the pool given back.
///
/// The `acquire` whose `create` timed out fails with it; a timed-out `recycle` only makes
/// the pool destroy that resource and try the next one; a timed-out `destroy` is logged. Its
/// [`source`](std::error::Error::source) is a [`TimedOut`], so code that looks for
/// timeouts through source chains ([`palisade_core::rejection::find`]) finds it.
///
/// ```
/// use std::time::Duration;
/// use palisade_resource_pool::error::HookTimedOut;
///
/// let err = HookTimedOut::new("db", "create", Duration::from_secs(30));
/// assert_eq!((err.name(), err.site(), err.after()), ("db", "create", Duration::from_secs(30)));
/// assert_eq!(err.to_string(), "the create hook of pool `db` did not finish within 30s");
/// ```
#[derive(Clone, Debug)]
pub struct HookTimedOut {
    site: &'static str,
    timed_out: TimedOut,
}

impl HookTimedOut {
    /// The hook `site` (`"create"`, `"recycle"`, `"destroy"`) of pool `name` ran out of its bound `after`.
    pub fn new(name: impl Into<Arc<str>>, site: &'static str, after: Duration) -> Self {
        Self { site, timed_out: TimedOut::new(name, after) }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        self.timed_out.name()
    }

    /// Which hook: `"create"`, `"recycle"` or `"destroy"`.
    pub fn site(&self) -> &'static str {
        self.site
    }

    /// The bound the hook ran out of.
    pub fn after(&self) -> Duration {
        self.timed_out.after()
    }
}

impl fmt::Display for HookTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} hook of pool `{}` did not finish within {:?}", self.site, self.name(), self.after())
    }
}

impl std::error::Error for HookTimedOut {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.timed_out)
    }
}
