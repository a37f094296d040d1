//! [`PollerBuilder`] over [`PollerConfig`]: a poller's schedule, backoff and timeout, and
//! starting it in a scope.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::sync::lock;
use palisade_core::BoxError;
use palisade_retry::backoff::Backoff;
use tokio::sync::{watch, Notify};
use tower_service::Service;

use super::runner::Runner;
use super::{Control, Finish, Poller, State};
use crate::scope::Scope;

/// Every option of a [`Poller`]: the builder's storage ([`Poller::builder`]) and, with the
/// feature `serde`, the settings-file form
/// (`{"interval": "10s", "jitter": 0.1, "backoff": {"fixed": {"delay": "1s"}}}`, each
/// optional).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PollerConfig {
    /// Time between polls after a success (not zero). Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub interval: Duration,
    /// Polls at once when started (otherwise after one interval). Default `false`.
    pub immediate: bool,
    /// Spreads each interval uniformly over `interval × [1 − jitter, 1 + jitter)` (0 to 1),
    /// so many pollers do not fire together. Default 0.
    pub jitter: f64,
    /// palisade-retry's [`Backoff`] after failures: the delay after the `n`th failure in a
    /// row is `backoff.delay(n)`, capped by [`max_backoff`](Self::max_backoff); a delay of
    /// zero means no backoff (the regular interval), never an immediate poll again. An
    /// exponential multiplier must be finite and at least 1. Default: exponential from 1 s.
    pub backoff: Backoff,
    /// The longest delay after a failure (not zero). Default: the interval.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub max_backoff: Option<Duration>,
    /// A poll taking longer fails with palisade-core's
    /// [`TimedOut`](palisade_core::rejection::TimedOut) (not zero). Default: none.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub timeout: Option<Duration>,
    /// Seeds the jitter's random numbers (for reproducible tests). Default: from entropy.
    pub seed: Option<u64>,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            immediate: false,
            jitter: 0.0,
            backoff: Backoff::exponential(Duration::from_secs(1)),
            max_backoff: None,
            timeout: None,
            seed: None,
        }
    }
}

impl PollerConfig {
    /// Checks every option.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `interval` zero, `jitter` outside 0 to 1,
    /// `timeout` zero, `max_backoff` zero, `backoff` with an exponential multiplier that is
    /// not a finite number of at least 1.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure_nonzero_duration("interval", self.interval)?;
        ensure(
            self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter),
            "jitter",
            "must be between 0 and 1",
        )?;
        if let Some(t) = self.timeout {
            ensure_nonzero_duration("timeout", t)?;
        }
        // A zero cap would make every wait after a failure zero: a failing service polled
        // again at once, over and over.
        if let Some(max) = self.max_backoff {
            ensure_nonzero_duration("max_backoff", max)?;
        }
        // As palisade-retry validates it (a NaN multiplier would read as "wait the cap", a
        // zero or negative one as no wait).
        if let Backoff::Exponential { multiplier, .. } = self.backoff {
            ensure(
                multiplier.is_finite() && multiplier >= 1.0,
                "backoff",
                "exponential multiplier must be a finite number >= 1.0",
            )?;
        }
        Ok(())
    }
}

/// Builds a [`Poller`]: a [`PollerConfig`] (every 30 s, first poll after one interval, no
/// jitter, exponential backoff from 1 s on failure capped at the interval, no timeout),
/// started in a scope by [`spawn`](Self::spawn).
#[derive(Clone, Debug, Default)]
pub struct PollerBuilder {
    config: PollerConfig,
}

impl From<PollerConfig> for PollerBuilder {
    fn from(config: PollerConfig) -> Self {
        Self { config }
    }
}

impl PollerBuilder {
    /// Sets [`PollerConfig::interval`].
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// Sets [`PollerConfig::immediate`].
    pub fn immediate(mut self, yes: bool) -> Self {
        self.config.immediate = yes;
        self
    }

    /// Sets [`PollerConfig::jitter`].
    pub fn jitter(mut self, ratio: f64) -> Self {
        self.config.jitter = ratio;
        self
    }

    /// Sets [`PollerConfig::backoff`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Sets [`PollerConfig::max_backoff`].
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.config.max_backoff = Some(max);
        self
    }

    /// Sets [`PollerConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Sets [`PollerConfig::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Starts polling `service` on a task of `scope` (it stops when the scope closes or is
    /// cancelled). Successes go to [`Poller::latest`]'s `watch` channel.
    ///
    /// # Errors
    ///
    /// As [`PollerConfig::validate`]; field `runtime` outside a Tokio runtime.
    pub fn spawn<S, T>(self, scope: &Scope, service: S) -> Result<Poller<T>, ConfigError>
    where
        S: Service<(), Response = T> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        T: Send + Sync + 'static,
    {
        self.spawn_with(scope, service, |_: &Result<T, BoxError>| {})
    }

    /// [`spawn`](PollerBuilder::spawn), also calling `on_result` with every poll's result
    /// (a panicking callback is contained).
    ///
    /// # Errors
    ///
    /// As [`spawn`](PollerBuilder::spawn).
    pub fn spawn_with<S, T, F>(
        self,
        scope: &Scope,
        service: S,
        on_result: F,
    ) -> Result<Poller<T>, ConfigError>
    where
        S: Service<(), Response = T> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        T: Send + Sync + 'static,
        F: Fn(&Result<T, BoxError>) + Send + Sync + 'static,
    {
        self.config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new("runtime", "a poller must be spawned inside a Tokio runtime"));
        }
        let control = Arc::new(Control {
            state: Mutex::new(State {
                running: true,
                finished: false,
                polls: 0,
                consecutive_failures: 0,
                next_at: None,
                last_outcome: None,
            }),
            poll_now: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let (tx, rx) = watch::channel(None);
        let closing = scope.inner.closing.clone();
        let cancelled = scope.token();
        let name: Arc<str> = scope.name().into();
        // The poller takes a turn of the scope's limit for each poll, not for its whole
        // life (a sleeping poller would otherwise keep a turn from the scope's other work
        // for ever).
        let limit = scope.limit().cloned();
        let run =
            Runner { config: self.config, service, tx, on_result, control: control.clone(), name, limit };
        let c = control.clone();
        // A task of the scope that also stops as soon as the scope stops admitting, so a
        // graceful close does not wait for it.
        // Marks the poller finished however its task ends (also when the scope cancels
        // the task before it runs, or drops it while it waits).
        let finish = Finish(c);
        let _task = scope.spawn_task(
            async move {
                let _finish = finish;
                tokio::select! {
                    () = closing.cancelled() => {}
                    () = cancelled.cancelled() => {}
                    () = run.run() => {}
                }
            },
            false,
        );
        if scope.is_closing() {
            let mut s = lock(&control.state);
            s.finished = true;
            s.running = false;
        }
        Ok(Poller { control, rx })
    }
}
