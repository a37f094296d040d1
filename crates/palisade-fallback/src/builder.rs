//! [`FallbackBuilder`]: a [`FallbackConfig`] plus what cannot be serialised (the classifier,
//! the provider, listeners).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use palisade_core::config::ConfigError;
use palisade_core::event::{EventBus, Listener};
use palisade_core::{BoxError, DefaultClassifier};

use crate::config::{FallbackConfig, TriggerOn};
use crate::event::FallbackEvent;
use crate::handle::Stats;
use crate::layer::{FallbackLayer, Shared};
use crate::provider::{FallbackContext, FnProvider, FnWithRequestProvider, ProviderKind, ServiceProvider};

/// No provider chosen yet; [`FallbackBuilder::build`] needs one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProvider;

/// Builds a [`FallbackLayer`]; made by [`FallbackLayer::builder`] or
/// [`FallbackConfig::into_builder`].
///
/// Choose a provider with [`fallback_fn`](Self::fallback_fn),
/// [`fallback_fn_with_request`](Self::fallback_fn_with_request),
/// [`fallback_service`](Self::fallback_service) or [`fallback_chain`](Self::fallback_chain);
/// [`build`](Self::build) exists once one is chosen.
#[must_use]
pub struct FallbackBuilder<C = DefaultClassifier, Provider = NoProvider> {
    config: FallbackConfig,
    classifier: C,
    provider: Provider,
    listeners: Vec<Listener<FallbackEvent>>,
}

impl<C: fmt::Debug, Provider: fmt::Debug> fmt::Debug for FallbackBuilder<C, Provider> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .field("provider", &self.provider)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl Default for FallbackBuilder {
    fn default() -> Self {
        Self::from_config(FallbackConfig::default())
    }
}

impl FallbackBuilder {
    pub(crate) fn from_config(config: FallbackConfig) -> Self {
        Self { config, classifier: DefaultClassifier, provider: NoProvider, listeners: Vec::new() }
    }
}

impl<C, Provider> FallbackBuilder<C, Provider> {
    /// Replaces every setting with `config` (classifier, provider and listeners are kept).
    pub fn config(mut self, config: FallbackConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`FallbackConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`FallbackConfig::trigger_on`].
    pub fn trigger_on(mut self, trigger_on: TriggerOn) -> Self {
        self.config.trigger_on = trigger_on;
        self
    }

    /// The classifier that judges inner answers and provider answers, as a
    /// `Classify<Res, BoxError>` (inner errors are boxed first). Default: every `Err` fails.
    ///
    /// A response judged a failure starts the fallback like an error does (with
    /// [`TriggerOn::Failures`] or the default), and a provider answer judged a failure moves
    /// the chain on to the next provider.
    pub fn classifier<C2>(self, classifier: C2) -> FallbackBuilder<C2, Provider> {
        FallbackBuilder {
            config: self.config,
            classifier,
            provider: self.provider,
            listeners: self.listeners,
        }
    }

    /// Registers a listener for every [`FallbackEvent`]. A listener that panics is caught
    /// and logged: it fails neither the call nor the layer.
    pub fn on_event<OnEvent>(mut self, listener: OnEvent) -> Self
    where
        OnEvent: Fn(&FallbackEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    fn provider<P2>(self, provider: P2) -> FallbackBuilder<C, P2> {
        FallbackBuilder {
            config: self.config,
            classifier: self.classifier,
            provider,
            listeners: self.listeners,
        }
    }

    /// Answers from a closure `Fn(FallbackContext<Req, Res>) -> impl Future<Output =
    /// Result<Res, E>>` (`E: Into<BoxError>`). The context holds the error or the failed
    /// response; the request is not kept (no clone, no bound on `Req`).
    ///
    /// The closure is erased here, once: the layer's type is `FallbackLayer<C,
    /// FnProvider<Req, Res>>` whatever the closure, and a future awaiting the service can be
    /// spawned even when the closure returns `BoxError` (see [`FnProvider`]). The closure and
    /// its future must therefore be `Send` and `'static`; each fallback allocates its boxed
    /// future.
    pub fn fallback_fn<Req, Res, F, Fut, E>(self, f: F) -> FallbackBuilder<C, FnProvider<Req, Res>>
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
    ) -> FallbackBuilder<C, FnWithRequestProvider<Req, Res>>
    where
        F: Fn(FallbackContext<Req, Res>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.provider(FnWithRequestProvider::new(f))
    }

    /// Answers by calling another service (`S: Service<Req, Response = Res> + Clone`) with a
    /// clone of the request (`Req: Clone`). Its events name it `"fallback"`.
    pub fn fallback_service<S>(self, service: S) -> FallbackBuilder<C, ServiceProvider<S>> {
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
    pub fn fallback_chain<I, N, S>(self, chain: I) -> FallbackBuilder<C, ServiceProvider<S>>
    where
        I: IntoIterator<Item = (N, S)>,
        N: Into<Arc<str>>,
    {
        self.provider(ServiceProvider::new(chain.into_iter().map(|(n, s)| (n.into(), s)).collect()))
    }
}

impl<C, Provider: ProviderKind> FallbackBuilder<C, Provider> {
    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the name is empty or the chain has no service.
    pub fn build(self) -> Result<FallbackLayer<C, Provider>, ConfigError> {
        self.config.validate()?;
        self.provider.validate()?;
        Ok(self.build_unchecked())
    }

    /// Builds without validating (for [`FallbackLayer::new`], whose settings are valid).
    pub(crate) fn build_unchecked(self) -> FallbackLayer<C, Provider> {
        let name: Arc<str> = self.config.name.into();
        let bus = EventBus::with_listeners("fallback", name.clone(), self.listeners);
        FallbackLayer::from_shared(Arc::new(Shared {
            provider: self.provider,
            classifier: self.classifier,
            trigger_on: self.config.trigger_on,
            stats: Arc::new(Stats::new(name, bus)),
        }))
    }
}
