//! The task of a running poller: its schedule, one poll, and the call it makes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::panic::{catch, CatchUnwind, Panicked};
use palisade_core::rejection::TimedOut;
use palisade_core::rng::AtomicRng;
use palisade_core::sync::lock;
use palisade_core::time::{deadline_from_now, mul_f64_saturating};
use palisade_core::BoxError;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use super::builder::PollerConfig;
use super::{Control, PollOutcome};

pub(super) struct Runner<S, T, F> {
    pub(super) config: PollerConfig,
    pub(super) service: S,
    pub(super) tx: watch::Sender<Option<T>>,
    pub(super) on_result: F,
    pub(super) control: Arc<Control>,
    pub(super) name: Arc<str>,
    /// The scope's concurrency limit: a turn is taken for each poll.
    pub(super) limit: Option<Arc<tokio::sync::Semaphore>>,
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
            if let Ok(d) = catch(|| backoff.delay(failures)) {
                // A zero delay (a fixed or custom zero) means no backoff: the regular
                // interval, never an immediate poll again (a failing service would be polled
                // in a busy loop).
                return match d.min(max) {
                    Duration::ZERO => self.config.interval,
                    d => d,
                };
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

    pub(super) async fn run(mut self) {
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
        // A turn of the scope's limit while polling, like any work of the scope (the
        // scope's cancellation ends the poller's task, waiting or not).
        let _turn = match &self.limit {
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        };
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
        if catch(|| on_result(&result)).is_err() {
            tracing::warn!(target: "palisade", scope = %self.name, "a poller's result callback panicked");
        }
        if let Ok(value) = result {
            self.tx.send_replace(Some(value));
        }
    }

    async fn call(&mut self) -> Result<T, BoxError> {
        let name = self.name.clone();
        let service = &mut self.service;
        let fut = CatchUnwind::new(async move {
            std::future::poll_fn(|cx: &mut Context<'_>| -> Poll<Result<(), BoxError>> {
                service.poll_ready(cx).map_err(Into::into)
            })
            .await?;
            service.call(()).await.map_err(Into::into)
        });
        let fut = async move {
            match fut.await {
                Ok(r) => r,
                Err(payload) => Err(Panicked::from_payload("poll", name, payload).into()),
            }
        };
        match self.config.timeout {
            None => fut.await,
            Some(limit) => match tokio::time::timeout_at(deadline_from_now(limit), fut).await {
                Ok(r) => r,
                Err(_) => Err(TimedOut::new(self.name.clone(), limit).into()),
            },
        }
    }
}
