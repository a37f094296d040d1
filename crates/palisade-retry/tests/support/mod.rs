//! Shared test helpers: a scripted service that records when it was called and whether
//! its futures were dropped before finishing.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_retry::RetryEvent;
use tokio::time::Instant;

/// What one call does.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answers `Ok(value)` after the delay.
    Ok(u32, Duration),
    /// Answers `Err(message)` after the delay.
    Err(&'static str, Duration),
    /// Never answers.
    Hang,
}

pub fn ok(v: u32) -> Step {
    Step::Ok(v, Duration::ZERO)
}

pub fn err(m: &'static str) -> Step {
    Step::Err(m, Duration::ZERO)
}

#[derive(Default)]
struct State {
    steps: VecDeque<Step>,
    calls: Vec<(Instant, u32)>,
}

/// A `Clone` service answering from a script; once the script is exhausted it repeats
/// the last step.
#[derive(Clone)]
pub struct Scripted {
    state: Arc<Mutex<State>>,
    last: Arc<Mutex<Option<Step>>>,
    pub dropped: Arc<AtomicUsize>,
    pub completed: Arc<AtomicUsize>,
    pub start: Instant,
}

impl Scripted {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State { steps: steps.into_iter().collect(), calls: Vec::new() })),
            last: Arc::new(Mutex::new(None)),
            dropped: Arc::new(AtomicUsize::new(0)),
            completed: Arc::new(AtomicUsize::new(0)),
            start: Instant::now(),
        }
    }

    /// Offsets of the calls from `start`.
    pub fn call_times(&self) -> Vec<Duration> {
        self.state.lock().unwrap().calls.iter().map(|(t, _)| t.duration_since(self.start)).collect()
    }

    /// Requests seen.
    pub fn requests(&self) -> Vec<u32> {
        self.state.lock().unwrap().calls.iter().map(|(_, r)| *r).collect()
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls.len()
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// The future of one scripted call; counts a drop before completion.
pub struct Call {
    step: Step,
    sleep: Pin<Box<tokio::time::Sleep>>,
    done: bool,
    dropped: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
}

impl Future for Call {
    type Output = Result<u32, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if matches!(self.step, Step::Hang) {
            return Poll::Pending;
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.done = true;
        self.completed.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(match self.step {
            Step::Ok(v, _) => Ok(v),
            Step::Err(m, _) => Err(m.into()),
            Step::Hang => unreachable!(),
        })
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl tower::Service<u32> for Scripted {
    type Response = u32;
    type Error = BoxError;
    type Future = Call;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Call {
        let step = {
            let mut s = self.state.lock().unwrap();
            s.calls.push((Instant::now(), req));
            let next = s.steps.pop_front();
            let mut last = self.last.lock().unwrap();
            match next {
                Some(step) => {
                    *last = Some(step.clone());
                    step
                }
                None => last.clone().unwrap_or(Step::Hang),
            }
        };
        let delay = match step {
            Step::Ok(_, d) | Step::Err(_, d) => d,
            Step::Hang => Duration::ZERO,
        };
        Call {
            step,
            sleep: Box::pin(tokio::time::sleep(delay)),
            done: false,
            dropped: self.dropped.clone(),
            completed: self.completed.clone(),
        }
    }
}

/// Collects events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<RetryEvent>>>);

impl Events {
    pub fn listener(&self) -> impl Fn(&RetryEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e: &RetryEvent| events.lock().unwrap().push(e.clone())
    }

    pub fn all(&self) -> Vec<RetryEvent> {
        self.0.lock().unwrap().clone()
    }

    /// The delays of the `RetryScheduled` events.
    pub fn delays(&self) -> Vec<Duration> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                RetryEvent::RetryScheduled { delay, .. } => Some(delay),
                _ => None,
            })
            .collect()
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Gaps between consecutive calls.
pub fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1].checked_sub(w[0]).unwrap()).collect()
}
