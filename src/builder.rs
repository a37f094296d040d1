//! [`ServiceBuilderExt`]: one `tower::ServiceBuilder` method per palisade pattern.

#[cfg(feature = "http")]
use tower::layer::util::Stack;
use tower::ServiceBuilder;

/// Adds palisade's layers to a [`ServiceBuilder`].
///
/// The method names never clash with `ServiceBuilder`'s own (`retry`, `rate_limit`,
/// `concurrency_limit`, `load_shed`, `timeout` exist there when tower's features are on).
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Answers palisade rejections with HTTP responses (429, 503, 504 …), so an axum router
    /// needs no `HandleErrorLayer`.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    fn http_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::HttpRejectionLayer, L>>;

    /// Answers palisade rejections with gRPC statuses (UNAVAILABLE, RESOURCE_EXHAUSTED …).
    #[cfg(feature = "grpc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
    fn grpc_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::GrpcRejectionLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "http")]
    fn http_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::HttpRejectionLayer, L>> {
        self.layer(palisade_core::respond::HttpRejectionLayer::new())
    }

    #[cfg(feature = "grpc")]
    fn grpc_rejections(self) -> ServiceBuilder<Stack<palisade_core::respond::GrpcRejectionLayer, L>> {
        self.layer(palisade_core::respond::GrpcRejectionLayer::new())
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
