//! Values provided to a scope with their async teardown.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use palisade_core::panic::{catch, CatchUnwind};

type TeardownFn = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One provided value and its teardown, run at most once.
pub(crate) struct Teardown {
    value: Arc<dyn Any + Send + Sync>,
    run: TeardownFn,
}

impl fmt::Debug for Teardown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Teardown").finish_non_exhaustive()
    }
}

impl Teardown {
    pub(crate) fn new<T, F, Fut>(value: Arc<T>, teardown: F) -> Self
    where
        T: Send + Sync + 'static,
        F: FnOnce(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let v = value.clone();
        Self { value, run: Box::new(move || Box::pin(teardown(v))) }
    }

    pub(crate) fn value(&self) -> &Arc<dyn Any + Send + Sync> {
        &self.value
    }

    /// Runs the teardown, containing a panic (user code).
    pub(crate) async fn run(self, scope: &str) {
        let run = self.run;
        let outcome = match catch(run) {
            Ok(fut) => CatchUnwind::new(fut).await,
            Err(payload) => Err(payload),
        };
        if outcome.is_err() {
            tracing::warn!(target: "palisade", scope = %scope, "a scoped resource's teardown panicked");
        }
    }
}
