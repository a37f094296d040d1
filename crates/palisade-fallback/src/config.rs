//! The builder and the `serde` configuration of [`FallbackLayer`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::{BoxError, DefaultClassifier};

use crate::event::{guarded, FallbackEvent};
use crate::handle::Stats;
use crate::layer::{FallbackLayer, Shared};
use crate::provider::{FallbackContext, FnProvider, FnWithRequestProvider, ProviderKind, ServiceProvider};

/// Which inner answers start the fallback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum TriggerOn {
    /// Failures of the inner service (per the classifier) and palisade rejections.
    #[default]
    FailuresAndRejections,
    /// Only failures of the inner service itself: errors that are not palisade rejections,
    /// and responses the classifier judges failures.
    Failures,
    /// Only palisade rejections (an open breaker, a full bulkhead, a rate limit, …); the
    /// inner service's own errors pass through.
    Rejections,
}

impl TriggerOn {
    pub(crate) const fn failures(self) -> bool {
        matches!(self, Self::FailuresAndRejections | Self::Failures)
    }

    pub(crate) const fn rejections(self) -> bool {
        matches!(self, Self::FailuresAndRejections | Self::Rejections)
    }
}

/// No provider chosen yet; [`FallbackBuilder::build`] needs one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProvider;

/// Builds a [`FallbackLayer`]; made by [`FallbackLayer::builder`].
///
/// Choose a provider with [`fallback_fn`](Self::fallback_fn),
/// [`fallback_fn_with_request`](Self::fallback_fn_with_request),
/// [`fallback_service`](Self::fallback_service) or [`fallback_chain`](Self::fallback_chain);
/// [`build`](Self::build) exists once one is chosen.
pub struct FallbackBuilder<P = NoProvider, C = DefaultClassifier> {
    name: Arc<str>,
    trigger_on: TriggerOn,
    classifier: C,
    provider: P,
    listeners: Vec<Listener<FallbackEvent>>,
}

impl<P: fmt::Debug, C: fmt::Debug> fmt::Debug for FallbackBuilder<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("name", &self.name)
            .field("trigger_on", &self.trigger_on)
            .field("classifier", &self.classifier)
            .field("provider", &self.provider)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl Default for FallbackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FallbackBuilder {
    /// A builder with the defaults: name `"fallback"`, [`TriggerOn::FailuresAndRejections`],
    /// [`DefaultClassifier`] (every `Err` is a failure), no provider yet.
    pub fn new() -> Self {
        Self {
            name: Arc::from("fallback"),
            trigger_on: TriggerOn::default(),
            classifier: DefaultClassifier,
            provider: NoProvider,
            listeners: Vec::new(),
        }
    }
}

impl<P, C> FallbackBuilder<P, C> {
    /// The layer's name, used in events and metric labels (default `"fallback"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Which inner answers start the fallback (default: failures and rejections).
    pub fn trigger_on(mut self, trigger_on: TriggerOn) -> Self {
        self.trigger_on = trigger_on;
        self
    }

    /// The classifier that judges inner answers and provider answers, as a
    /// `Classify<Res, BoxError>` (inner errors are boxed first). Default: every `Err` fails.
    ///
    /// A response judged a failure starts the fallback like an error does (with
    /// [`TriggerOn::Failures`] or the default), and a provider answer judged a failure moves
    /// the chain on to the next provider.
    pub fn classifier<C2>(self, classifier: C2) -> FallbackBuilder<P, C2> {
        FallbackBuilder {
            name: self.name,
            trigger_on: self.trigger_on,
            classifier,
            provider: self.provider,
            listeners: self.listeners,
        }
    }

    /// Registers a listener for every [`FallbackEvent`]. A listener that panics is caught
    /// and logged: it fails neither the call nor the layer.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&FallbackEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(guarded(listener)));
        self
    }

    fn provider<P2>(self, provider: P2) -> FallbackBuilder<P2, C> {
        FallbackBuilder {
            name: self.name,
            trigger_on: self.trigger_on,
            classifier: self.classifier,
            provider,
            listeners: self.listeners,
        }
    }

    /// Answers from a closure `Fn(FallbackContext<Req, Res>) -> impl Future<Output =
    /// Result<Res, E>>` (`E: Into<BoxError>`). The context holds the error or the failed
    /// response; the request is not kept (no clone, no bound on `Req`).
    ///
    /// The closure is erased here, once: the layer's type is `FallbackLayer<FnProvider<Req,
    /// Res>>` whatever the closure, and a future awaiting the service can be spawned even
    /// when the closure returns `BoxError` (see [`FnProvider`]). The closure and its future
    /// must therefore be `Send` and `'static`; each fallback allocates its boxed future.
    pub fn fallback_fn<Req, Res, F, Fut, E>(self, f: F) -> FallbackBuilder<FnProvider<Req, Res>, C>
    where
        F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.provider(FnProvider::new(f))
    }

    /// Like [`fallback_fn`](Self::fallback_fn), and the context also holds the request:
    /// every request is cloned before the inner call, so `Req: Clone` is required.
    pub fn fallback_fn_with_request<Req, Res, F, Fut, E>(
        self,
        f: F,
    ) -> FallbackBuilder<FnWithRequestProvider<Req, Res>, C>
    where
        F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.provider(FnWithRequestProvider::new(f))
    }

    /// Answers by calling another service (`S: Service<Req, Response = Res> + Clone`) with a
    /// clone of the request (`Req: Clone`). Its events name it `"fallback"`.
    pub fn fallback_service<S>(self, service: S) -> FallbackBuilder<ServiceProvider<S>, C> {
        self.provider(ServiceProvider::new(vec![(Arc::from("fallback"), service)]))
    }

    /// Answers from a chain of named services tried in order: when one fails (per the
    /// classifier), the next gets a clone of the request; the last one's answer is returned.
    /// All must have one type (box them, e.g. with `tower::util::BoxCloneSyncService`, to mix
    /// kinds).
    ///
    /// `build` fails when the chain is empty.
    ///
    /// ```
    /// use palisade_core::BoxError;
    /// use palisade_fallback::FallbackLayer;
    /// use tower::util::BoxCloneSyncService;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # tokio_test::block_on(async {
    /// let replica = BoxCloneSyncService::new(service_fn(|_: u32| async {
    ///     Err::<String, BoxError>("replica down".into())
    /// }));
    /// let cache = BoxCloneSyncService::new(service_fn(|id: u32| async move {
    ///     Ok::<_, BoxError>(format!("cached {id}"))
    /// }));
    /// let layer = FallbackLayer::builder().fallback_chain([("replica", replica), ("cache", cache)]).build()?;
    /// let primary = service_fn(|_: u32| async { Err::<String, BoxError>("primary down".into()) });
    /// assert_eq!(layer.layer(primary).oneshot(7).await?, "cached 7");
    /// assert_eq!(layer.handle().snapshot().provider_failures, 1);
    /// # Ok::<_, BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn fallback_chain<I, N, S>(self, chain: I) -> FallbackBuilder<ServiceProvider<S>, C>
    where
        I: IntoIterator<Item = (N, S)>,
        N: Into<Arc<str>>,
    {
        self.provider(ServiceProvider::new(chain.into_iter().map(|(n, s)| (n.into(), s)).collect()))
    }
}

impl<P: ProviderKind, C> FallbackBuilder<P, C> {
    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the name is empty or the chain has no service.
    pub fn build(self) -> Result<FallbackLayer<P, C>, ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        self.provider.validate()?;
        let bus = EventBus::with_listeners("fallback", self.name.clone(), self.listeners);
        let stats = Arc::new(Stats::new(self.name, bus));
        Ok(FallbackLayer::from_shared(Arc::new(Shared {
            provider: self.provider,
            classifier: self.classifier,
            trigger_on: self.trigger_on,
            stats,
        })))
    }
}

/// The `serde` form of a fallback's settings (the provider is code, so it is added to the
/// builder this returns).
///
/// ```
/// use palisade_core::BoxError;
/// use palisade_fallback::{FallbackConfig, FallbackContext};
///
/// let config: FallbackConfig =
///     serde_json::from_str(r#"{ "name": "prices", "trigger_on": "rejections" }"#).unwrap();
/// let layer = config
///     .into_builder()?
///     .fallback_fn(|_: FallbackContext<(), u32>| async { Ok::<_, BoxError>(0) })
///     .build()?;
/// assert_eq!(layer.handle().name(), "prices");
/// # Ok::<_, palisade_core::ConfigError>(())
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FallbackConfig {
    /// The layer's name (default `"fallback"`).
    pub name: Option<String>,
    /// Which inner answers start the fallback: `"failures_and_rejections"` (default),
    /// `"failures"` or `"rejections"`.
    pub trigger_on: TriggerOn,
}

#[cfg(feature = "serde")]
impl FallbackConfig {
    /// Validates the settings and returns a builder holding them.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the name is empty.
    pub fn into_builder(self) -> Result<FallbackBuilder, ConfigError> {
        let mut builder = FallbackBuilder::new().trigger_on(self.trigger_on);
        if let Some(name) = self.name {
            ensure(!name.is_empty(), "name", "must not be empty")?;
            builder = builder.name(name);
        }
        Ok(builder)
    }
}
