use tower_layer::Layer;

use crate::scope::Scope;
use crate::service::ScopeService;

/// Binds every request of a service stack to a [`Scope`]; see [`ScopeService`].
///
/// # Example: graceful shutdown
///
/// ```
/// use std::time::Duration;
/// use palisade_scope::{Scope, ScopeLayer};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade_core::BoxError> {
/// let scope = Scope::new("server");
/// let mut svc = ServiceBuilder::new()
///     .layer(ScopeLayer::new(scope.clone()))
///     .service(service_fn(|secs: u64| async move {
///         tokio::time::sleep(Duration::from_secs(secs)).await;
///         Ok::<_, std::io::Error>(secs)
///     }));
/// let quick = tokio::spawn(svc.ready().await?.call(1));
/// let slow = tokio::spawn(svc.ready().await?.call(60));
/// let report = scope.close(Duration::from_secs(5)).await;
/// assert_eq!((report.finished, report.cancelled), (1, 1));
/// assert_eq!(quick.await.unwrap()?, 1);
/// assert!(slow.await.unwrap().unwrap_err().is::<palisade_scope::error::Cancelled>());
/// // Closed scopes refuse new requests.
/// assert!(svc.ready().await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ScopeLayer {
    scope: Scope,
}

impl ScopeLayer {
    /// A layer binding requests to `scope`.
    pub fn new(scope: Scope) -> Self {
        Self { scope }
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl<S> Layer<S> for ScopeLayer {
    type Service = ScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScopeService::new(inner, self.scope.clone())
    }
}
