//! [`Poller`]: drives a `Service<()>` (or a closure, with [`make_fn`]) on an interval, with
//! backoff on failure, a controller and a [snapshot](PollerSnapshot) a dashboard can show.

mod builder;
mod runner;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::sync::lock;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

pub use self::builder::{PollerBuilder, PollerConfig};
pub use palisade_core::make_fn::{make_fn, MakeFn};

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

/// A [`Poller`]'s state at one moment, from [`Poller::snapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollerSnapshot {
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

pub(crate) struct State {
    pub(crate) running: bool,
    pub(crate) finished: bool,
    pub(crate) polls: u64,
    pub(crate) consecutive_failures: u32,
    pub(crate) next_at: Option<Instant>,
    pub(crate) last_outcome: Option<PollOutcome>,
}

pub(crate) struct Control {
    pub(crate) state: Mutex<State>,
    pub(crate) poll_now: AtomicBool,
    pub(crate) notify: Notify,
}

/// The controller of a running poller: [`snapshot`](Poller::snapshot), [`stop`](Poller::stop),
/// [`start`](Poller::start), [`poll_now`](Poller::poll_now), and the latest successful
/// value through [`latest`](Poller::latest).
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
/// let mut latest = poller.latest();
/// latest.changed().await.unwrap();
/// assert_eq!(latest.borrow().as_deref(), Some("v1"));
/// assert_eq!(poller.snapshot().polls, 1);
/// assert_eq!(poller.snapshot().next_poll_in, Some(Duration::from_secs(10)));
/// scope.cancel();
/// tokio::task::yield_now().await;
/// assert!(poller.snapshot().finished);
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
    pub(crate) control: Arc<Control>,
    pub(crate) rx: watch::Receiver<Option<T>>,
}

impl<T> Clone for Poller<T> {
    fn clone(&self) -> Self {
        Self { control: self.control.clone(), rx: self.rx.clone() }
    }
}

impl<T> fmt::Debug for Poller<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller").field("snapshot", &self.snapshot()).finish()
    }
}

impl Poller<()> {
    /// A builder with the defaults of [`PollerConfig`].
    pub fn builder() -> PollerBuilder {
        PollerBuilder::default()
    }
}

impl<T> Poller<T> {
    /// The poller's state now.
    pub fn snapshot(&self) -> PollerSnapshot {
        let s = lock(&self.control.state);
        let now = Instant::now();
        PollerSnapshot {
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
    pub fn latest(&self) -> watch::Receiver<Option<T>> {
        self.rx.clone()
    }
}

/// Marks the poller finished when dropped.
pub(crate) struct Finish(pub(crate) Arc<Control>);

impl Drop for Finish {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.finished = true;
        s.running = false;
        s.next_at = None;
    }
}
