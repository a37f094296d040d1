//! [`Poller`]: drives a `Service<()>` (or a closure) on an interval, with backoff on
//! failure, a controller and a status a dashboard can show.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::rejection::TimedOut;
use palisade_core::rng::AtomicRng;
use palisade_core::time::{deadline_from_now, mul_f64_saturating};
use palisade_core::BoxError;
use palisade_retry::backoff::Backoff;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower_service::Service;

use crate::error::TaskPanicked;
use crate::scope::Scope;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How the last poll ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollOutcome {
    /// It succeeded, taking `took`.
    Success {
        /// How long the poll took.
        took: Duration,
    },
    /// It failed (an error, a timeout, a panic, an open breaker inside the service).
    Failure {
        /// The error's message.
        error: Arc<str>,
        /// How long the poll took.
        took: Duration,
    },
}

impl PollOutcome {
    /// Whether the poll succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success { .. })
    }
}

/// A [`Poller`]'s state at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollStatus {
    /// Polling is on (not [stopped](Poller::stop), scope not ended).
    pub running: bool,
    /// The poller's task ended (its scope ended).
    pub finished: bool,
    /// Polls made.
    pub polls: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Time until the next scheduled poll (`None` when stopped, polling or finished).
    pub next_poll_in: Option<Duration>,
    /// How the last poll ended.
    pub last_outcome: Option<PollOutcome>,
}

struct State {
    running: bool,
    finished: bool,
    polls: u64,
    consecutive_failures: u32,
    next_at: Option<Instant>,
    last_outcome: Option<PollOutcome>,
}

struct Control {
    state: Mutex<State>,
    poll_now: AtomicBool,
    notify: Notify,
}

/// Builds a [`Poller`]; defaults: every 30 s, first poll after one interval, no jitter,
/// exponential backoff from 1 s on failure capped at the interval, no timeout.
#[derive(Clone, Debug)]
pub struct PollerBuilder {
    interval: Duration,
    immediate: bool,
    jitter: f64,
    backoff: Backoff,
    max_backoff: Option<Duration>,
    timeout: Option<Duration>,
    seed: Option<u64>,
}

impl Default for PollerBuilder {
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

impl PollerBuilder {
    /// Time between polls after a success (not zero).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Polls at once when started (otherwise after one interval).
    pub fn immediate(mut self, yes: bool) -> Self {
        self.immediate = yes;
        self
    }

    /// Spreads each interval uniformly over `interval × [1 − ratio, 1 + ratio)` (0 to 1), so
    /// many pollers do not fire together.
    pub fn jitter(mut self, ratio: f64) -> Self {
        self.jitter = ratio;
        self
    }

    /// palisade-retry's [`Backoff`] after failures: the delay after the `n`th failure in a
    /// row is `backoff.delay(n)`, capped by [`max_backoff`](PollerBuilder::max_backoff).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest delay after a failure (default: the interval).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = Some(max);
        self
    }

    /// A poll taking longer fails with palisade-core's
    /// [`TimedOut`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Seeds the jitter's random numbers (for reproducible tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ensure_nonzero_duration("interval", self.interval)?;
        ensure(
            self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter),
            "jitter",
            "must be between 0 and 1",
        )?;
        if let Some(t) = self.timeout {
            ensure_nonzero_duration("timeout", t)?;
        }
        Ok(())
    }

    /// Starts polling `service` on a task of `scope` (it stops when the scope closes or is
    /// cancelled). Successes go to [`Poller::subscribe`]'s `watch` channel.
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
        self.validate()?;
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
        let run = Runner { config: self.clone(), service, tx, on_result, control: control.clone(), name };
        let c = control.clone();
        // A task of the scope that also stops as soon as the scope stops admitting, so a
        // graceful close does not wait for it.
        // Marks the poller finished however its task ends (also when the scope cancels
        // the task before it runs, or drops it while it waits).
        let finish = Finish(c);
        let _task = scope.spawn(async move {
            let _finish = finish;
            tokio::select! {
                () = closing.cancelled() => {}
                () = cancelled.cancelled() => {}
                () = run.run() => {}
            }
        });
        if scope.is_closing() {
            let mut s = lock(&control.state);
            s.finished = true;
            s.running = false;
        }
        Ok(Poller { control, rx })
    }
}

/// The controller of a running poller: [`status`](Poller::status), [`stop`](Poller::stop),
/// [`start`](Poller::start), [`poll_now`](Poller::poll_now), and the latest successful
/// value through [`subscribe`](Poller::subscribe).
///
/// # Example: a config endpoint polled with backoff
///
/// ```
/// use std::time::Duration;
/// use palisade_scope::{Poller, Scope};
/// use tower::service_fn;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade_core::ConfigError> {
/// let scope = Scope::new("config");
/// let poller = Poller::builder()
///     .interval(Duration::from_secs(10))
///     .immediate(true)
///     .spawn(&scope, service_fn(|()| async { Ok::<_, std::io::Error>(String::from("v1")) }))?;
/// let mut latest = poller.subscribe();
/// latest.changed().await.unwrap();
/// assert_eq!(latest.borrow().as_deref(), Some("v1"));
/// assert_eq!(poller.status().polls, 1);
/// assert_eq!(poller.status().next_poll_in, Some(Duration::from_secs(10)));
/// scope.cancel();
/// tokio::task::yield_now().await;
/// assert!(poller.status().finished);
/// # Ok(())
/// # }
/// ```
///
/// A circuit breaker goes around the service (palisade-circuit-breaker's layer): while it
/// is open each poll fails fast with its rejection and the poller backs off.
///
/// # Clone
///
/// Clones control the same poller.
pub struct Poller<T> {
    control: Arc<Control>,
    rx: watch::Receiver<Option<T>>,
}

impl<T> Clone for Poller<T> {
    fn clone(&self) -> Self {
        Self { control: self.control.clone(), rx: self.rx.clone() }
    }
}

impl<T> fmt::Debug for Poller<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller").field("status", &self.status()).finish()
    }
}

impl Poller<()> {
    /// A builder with the defaults listed on [`PollerBuilder`].
    pub fn builder() -> PollerBuilder {
        PollerBuilder::default()
    }
}

impl<T> Poller<T> {
    /// The poller's state now.
    pub fn status(&self) -> PollStatus {
        let s = lock(&self.control.state);
        let now = Instant::now();
        PollStatus {
            running: s.running,
            finished: s.finished,
            polls: s.polls,
            consecutive_failures: s.consecutive_failures,
            next_poll_in: s.next_at.map(|at| at.saturating_duration_since(now)),
            last_outcome: s.last_outcome.clone(),
        }
    }

    /// Stops polling (a poll in progress finishes); [`start`](Poller::start) resumes.
    pub fn stop(&self) {
        lock(&self.control.state).running = false;
        self.control.notify.notify_one();
    }

    /// Resumes polling after [`stop`](Poller::stop): the next poll is one interval away
    /// (at once with `immediate`).
    pub fn start(&self) {
        let mut s = lock(&self.control.state);
        if !s.finished {
            s.running = true;
        }
        drop(s);
        self.control.notify.notify_one();
    }

    /// Polls as soon as possible (also while stopped), then goes on with the schedule.
    pub fn poll_now(&self) {
        self.control.poll_now.store(true, Ordering::Release);
        self.control.notify.notify_one();
    }

    /// A `watch` receiver of the latest successful value (`None` before the first).
    pub fn subscribe(&self) -> watch::Receiver<Option<T>> {
        self.rx.clone()
    }
}

/// Marks the poller finished when dropped.
struct Finish(Arc<Control>);

impl Drop for Finish {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.finished = true;
        s.running = false;
        s.next_at = None;
    }
}

struct Runner<S, T, F> {
    config: PollerBuilder,
    service: S,
    tx: watch::Sender<Option<T>>,
    on_result: F,
    control: Arc<Control>,
    name: Arc<str>,
}

impl<S, T, F> Runner<S, T, F>
where
    S: Service<(), Response = T> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    T: Send + Sync + 'static,
    F: Fn(&Result<T, BoxError>) + Send + Sync + 'static,
{
    fn delay(&self, rng: &AtomicRng, first: bool, failures: u32) -> Duration {
        if first && self.config.immediate {
            return Duration::ZERO;
        }
        if failures > 0 {
            let max = self.config.max_backoff.unwrap_or(self.config.interval);
            // A custom backoff is user code run on the poller's task: a panic in it falls
            // back to the longest delay instead of ending the poller.
            let backoff = &self.config.backoff;
            if let Ok(d) = catch_unwind(AssertUnwindSafe(|| backoff.delay(failures))) {
                return d.min(max);
            }
            tracing::warn!(target: "palisade", scope = %self.name, "a poller's custom backoff panicked: using max_backoff");
            return max;
        }
        if self.config.jitter > 0.0 {
            let spread = self.config.jitter * (2.0 * rng.next_f64() - 1.0);
            return mul_f64_saturating(self.config.interval, 1.0 + spread);
        }
        self.config.interval
    }

    async fn run(mut self) {
        let rng = self.config.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded);
        let mut first = true;
        loop {
            let (running, failures) = {
                let s = lock(&self.control.state);
                (s.running, s.consecutive_failures)
            };
            if self.control.poll_now.swap(false, Ordering::AcqRel) {
                self.poll_once().await;
                first = false;
                continue;
            }
            if !running {
                lock(&self.control.state).next_at = None;
                self.control.notify.notified().await;
                // Started again: the schedule starts over.
                first = true;
                continue;
            }
            let at = deadline_from_now(self.delay(&rng, first, failures));
            lock(&self.control.state).next_at = Some(at);
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.control.notify.notified() => continue,
            }
            first = false;
            if lock(&self.control.state).running {
                self.poll_once().await;
            }
        }
    }

    async fn poll_once(&mut self) {
        lock(&self.control.state).next_at = None;
        let started = Instant::now();
        let result = self.call().await;
        let took = started.elapsed();
        {
            let mut s = lock(&self.control.state);
            s.polls += 1;
            s.last_outcome = Some(match &result {
                Ok(_) => {
                    s.consecutive_failures = 0;
                    PollOutcome::Success { took }
                }
                Err(e) => {
                    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                    PollOutcome::Failure { error: e.to_string().into(), took }
                }
            });
        }
        let on_result = &self.on_result;
        if catch_unwind(AssertUnwindSafe(|| on_result(&result))).is_err() {
            tracing::warn!(target: "palisade", scope = %self.name, "a poller's result callback panicked");
        }
        if let Ok(value) = result {
            self.tx.send_replace(Some(value));
        }
    }

    async fn call(&mut self) -> Result<T, BoxError> {
        let name = self.name.clone();
        let service = &mut self.service;
        let fut = AssertUnwindSafe(async move {
            std::future::poll_fn(|cx: &mut Context<'_>| -> Poll<Result<(), BoxError>> {
                service.poll_ready(cx).map_err(Into::into)
            })
            .await?;
            service.call(()).await.map_err(Into::into)
        });
        let fut = fut.catch_unwind().map(move |r| match r {
            Ok(r) => r,
            Err(payload) => Err(TaskPanicked::new(name, &*payload).into()),
        });
        match self.config.timeout {
            None => fut.await,
            Some(limit) => match tokio::time::timeout_at(deadline_from_now(limit), fut).await {
                Ok(r) => r,
                Err(_) => Err(TimedOut::new(self.name.clone(), limit).into()),
            },
        }
    }
}

/// A `Service<()>` from a closure returning a future, for [`PollerBuilder::spawn`].
///
/// ```
/// use palisade_scope::poller::poll_fn;
/// let svc = poll_fn(|| async { Ok::<_, std::io::Error>(42) });
/// # let _ = svc;
/// ```
pub fn poll_fn<F, Fut, T, E>(f: F) -> PollFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    PollFn { f }
}

/// The service made by [`poll_fn`].
#[derive(Clone, Copy)]
pub struct PollFn<F> {
    f: F,
}

impl<F> fmt::Debug for PollFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollFn").finish_non_exhaustive()
    }
}

impl<F, Fut, T, E> Service<()> for PollFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Response = T;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Fut {
        (self.f)()
    }
}
