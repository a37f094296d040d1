//! Test members and factories for the pool tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_pool::{make_fn, MakeFn, PoolEvent};
use tokio::time::Instant;
use tower::Service;

/// A job: `n` identifies it, the member works `work` and fails when `fail`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Job {
    pub n: u32,
    pub work: Duration,
    pub fail: bool,
    pub priority: u8,
    pub health: bool,
}

impl Job {
    pub fn new(n: u32) -> Self {
        Self { n, ..Self::default() }
    }

    pub fn work(mut self, ms: u64) -> Self {
        self.work = Duration::from_millis(ms);
        self
    }

    pub fn failing(mut self) -> Self {
        self.fail = true;
        self
    }

    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
}

/// What a member made by [`Factory`] does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Fails every call.
    pub fail_calls: bool,
    /// `poll_ready` fails after this many calls.
    pub ready_error_after: Option<usize>,
    /// Fails health-check calls.
    pub fail_health: bool,
    /// Panics in `call` (synchronously, on the pool's worker task), for jobs that are not
    /// health checks.
    pub panic_in_call: bool,
    /// Panics in the response future of jobs that are not health checks.
    pub panic_in_future: bool,
    /// Panics in `poll_ready`.
    pub panic_in_ready: bool,
    /// Panics in `call` for health checks.
    pub panic_in_health: bool,
}

#[derive(Debug)]
pub struct TestMember {
    pub id: u64,
    behaviour: Behaviour,
    calls: usize,
    log: Arc<Mutex<Vec<(u64, u32)>>>,
}

impl Service<Job> for TestMember {
    type Response = (u64, u32);
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(u64, u32), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        assert!(!self.behaviour.panic_in_ready, "member {} panicked in poll_ready", self.id);
        match self.behaviour.ready_error_after {
            Some(n) if self.calls >= n => Poll::Ready(Err("member broke".into())),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, job: Job) -> Self::Future {
        self.calls += 1;
        let id = self.id;
        if job.health {
            assert!(!self.behaviour.panic_in_health, "member {id} panicked in a health check");
        } else {
            assert!(!self.behaviour.panic_in_call, "member {id} panicked in call");
        }
        let panic_in_future = !job.health && self.behaviour.panic_in_future;
        if !job.health {
            self.log.lock().unwrap().push((id, job.n));
        }
        let fail = job.fail || self.behaviour.fail_calls || (job.health && self.behaviour.fail_health);
        Box::pin(async move {
            if !job.work.is_zero() {
                tokio::time::sleep(job.work).await;
            }
            assert!(!panic_in_future, "member {id} panicked in its response future");
            if fail {
                Err(format!("job {} failed on member {id}", job.n).into())
            } else {
                Ok((id, job.n))
            }
        })
    }
}

/// Makes [`TestMember`]s, numbered from 0, with a behaviour per member id; can fail or
/// delay making.
#[derive(Clone, Default)]
pub struct Factory {
    pub next: Arc<AtomicU64>,
    pub attempts: Arc<Mutex<Vec<Instant>>>,
    pub fail_first: Arc<AtomicUsize>,
    pub make_delay: Arc<Mutex<Vec<Duration>>>,
    pub behaviours: Arc<Mutex<Vec<(u64, Behaviour)>>>,
    /// (member, job) for every call, in the order members received them.
    pub log: Arc<Mutex<Vec<(u64, u32)>>>,
}

impl Factory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn behave(self, id: u64, b: Behaviour) -> Self {
        self.behaviours.lock().unwrap().push((id, b));
        self
    }

    pub fn fail_first(self, n: usize) -> Self {
        self.fail_first.store(n, Ordering::SeqCst);
        self
    }

    /// Delays of successive makes (later makes take no time).
    pub fn delays(self, d: Vec<Duration>) -> Self {
        *self.make_delay.lock().unwrap() = d;
        self
    }

    pub fn served_by(&self) -> Vec<u64> {
        self.log.lock().unwrap().iter().map(|(m, _)| *m).collect()
    }

    pub fn jobs(&self) -> Vec<u32> {
        self.log.lock().unwrap().iter().map(|(_, j)| *j).collect()
    }

    pub fn make(
        &self,
    ) -> MakeFn<
        impl FnMut() -> Pin<Box<dyn Future<Output = Result<TestMember, BoxError>> + Send>> + Send + 'static,
    > {
        let f = self.clone();
        make_fn(move || {
            let f = f.clone();
            Box::pin(async move {
                f.attempts.lock().unwrap().push(Instant::now());
                let delay = {
                    let mut d = f.make_delay.lock().unwrap();
                    if d.is_empty() {
                        Duration::ZERO
                    } else {
                        d.remove(0)
                    }
                };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if f.fail_first.load(Ordering::SeqCst) > 0 {
                    f.fail_first.fetch_sub(1, Ordering::SeqCst);
                    return Err::<TestMember, BoxError>("cannot make a member".into());
                }
                let id = f.next.fetch_add(1, Ordering::SeqCst);
                let behaviour = f
                    .behaviours
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, b)| *b)
                    .unwrap_or_default();
                Ok(TestMember { id, behaviour, calls: 0, log: f.log.clone() })
            }) as Pin<Box<dyn Future<Output = Result<TestMember, BoxError>> + Send>>
        })
    }
}

/// Lets the worker and spawned tasks run without moving the clock.
pub async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// Collects events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<PoolEvent>>>);

impl Events {
    pub fn listener(&self) -> impl Fn(&PoolEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e: &PoolEvent| events.lock().unwrap().push(e.clone())
    }

    pub fn all(&self) -> Vec<PoolEvent> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, pred: impl Fn(&PoolEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| pred(e)).count()
    }
}
