//! [`SelectConfig`]: every option of a [`Select`], its default and its validation; and
//! [`SelectBuilder`], the config plus what cannot be serialised (ranking, filter,
//! classifier).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::classify::DefaultClassifier;
use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use tower::discover::Discover;

use super::meta::{Provider, ProviderMeta, Ranking};
use super::select::{DiscoveryState, Select, SelectShared};

/// A [`Select`]'s settings: the storage of [`SelectBuilder`], and the form read from a
/// config file (feature `serde`; missing fields keep their defaults, durations are strings
/// like `"10s"`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct SelectConfig {
    /// The name in errors and logs. Default `"select"`.
    pub name: String,
    /// Failures in a row that mark a provider down. Default 3, at least 1.
    pub unhealthy_after: u32,
    /// How long a provider stays down before it is tried again first. Default 10 s, not
    /// zero; a huge value saturates.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub down_for: Duration,
    /// Providers tried per request at most. Default: every one; at least 1.
    pub max_attempts: usize,
    /// Latency assumed before a provider's first call. Default 100 ms.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub peak_ewma_default_rtt: Duration,
    /// The peak-EWMA decay time. Default 10 s, not zero.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub peak_ewma_decay: Duration,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            name: String::from("select"),
            unhealthy_after: 3,
            down_for: Duration::from_secs(10),
            max_attempts: usize::MAX,
            peak_ewma_default_rtt: Duration::from_millis(100),
            peak_ewma_decay: Duration::from_secs(10),
        }
    }
}

impl SelectConfig {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// The first invalid setting, named by its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.unhealthy_after >= 1, "unhealthy_after", "must be at least 1")?;
        ensure_nonzero_duration("down_for", self.down_for)?;
        ensure(self.max_attempts >= 1, "max_attempts", "must be at least 1")?;
        ensure_nonzero_duration("peak_ewma_decay", self.peak_ewma_decay)?;
        Ok(())
    }

    /// A builder with these settings; its `build` validates them (as every crate's
    /// `XConfig::into_builder`, CONTRIBUTING §5).
    pub fn into_builder<Metadata: ProviderMeta>(self) -> SelectBuilder<Metadata> {
        SelectBuilder::new().config(self)
    }
}

/// Builds a [`Select`]; start with [`Select::builder`]. Every serialisable setting is a
/// field of [`SelectConfig`] (defaults and rules there); the ranking defaults to
/// [`Ranking::Balanced`], no filter, the classifier to [`DefaultClassifier`].
pub struct SelectBuilder<Metadata, C = DefaultClassifier> {
    config: SelectConfig,
    ranking: Ranking<Metadata>,
    filter: Option<Arc<dyn Fn(&Metadata) -> bool + Send + Sync>>,
    classifier: C,
}

impl<Metadata, C> fmt::Debug for SelectBuilder<Metadata, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectBuilder")
            .field("config", &self.config)
            .field("ranking", &self.ranking)
            .field("filter", &self.filter.is_some())
            .finish_non_exhaustive()
    }
}

impl<Metadata: ProviderMeta> SelectBuilder<Metadata> {
    pub(super) fn new() -> Self {
        Self {
            config: SelectConfig::default(),
            ranking: Ranking::Balanced,
            filter: None,
            classifier: DefaultClassifier,
        }
    }
}

impl<Metadata: ProviderMeta, C> SelectBuilder<Metadata, C> {
    /// Replaces every [`SelectConfig`] setting with `config`.
    pub fn config(mut self, config: SelectConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`SelectConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`SelectConfig::unhealthy_after`].
    pub fn unhealthy_after(mut self, failures: u32) -> Self {
        self.config.unhealthy_after = failures;
        self
    }

    /// Sets [`SelectConfig::down_for`].
    pub fn down_for(mut self, duration: Duration) -> Self {
        self.config.down_for = duration;
        self
    }

    /// Sets [`SelectConfig::max_attempts`].
    pub fn max_attempts(mut self, n: usize) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// Sets [`SelectConfig::peak_ewma_default_rtt`] and [`SelectConfig::peak_ewma_decay`].
    pub fn peak_ewma(mut self, default_rtt: Duration, decay: Duration) -> Self {
        (self.config.peak_ewma_default_rtt, self.config.peak_ewma_decay) = (default_rtt, decay);
        self
    }

    /// The order providers are tried in (default [`Ranking::Balanced`]).
    pub fn ranking(mut self, ranking: Ranking<Metadata>) -> Self {
        self.ranking = ranking;
        self
    }

    /// Only providers whose metadata passes `filter` are tried.
    pub fn filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&Metadata) -> bool + Send + Sync + 'static,
    {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Judges calls with `classifier`: its failures fall back and count against health.
    pub fn classifier<C2>(self, classifier: C2) -> SelectBuilder<Metadata, C2> {
        let Self { config, ranking, filter, classifier: _ } = self;
        SelectBuilder { config, ranking, filter, classifier }
    }

    /// A `Select` over the providers `discover` yields.
    ///
    /// # Errors
    ///
    /// The first invalid setting ([`SelectConfig::validate`]).
    pub fn build<Discovery, K, S>(
        self,
        discover: Discovery,
    ) -> Result<Select<Discovery, K, S, Metadata, C>, ConfigError>
    where
        Discovery: Discover<Key = K, Service = Provider<S, Metadata>>,
    {
        self.config.validate()?;
        let name: Arc<str> = self.config.name.as_str().into();
        Ok(Select::from_shared(Arc::new(SelectShared {
            discover: Mutex::new(DiscoveryState { stream: Box::pin(discover), ended: false }),
            providers: Mutex::new(Vec::new()),
            name,
            config: self.config,
            ranking: self.ranking,
            filter: self.filter,
            classifier: Arc::new(self.classifier),
        })))
    }
}
