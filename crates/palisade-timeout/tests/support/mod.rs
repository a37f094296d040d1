//! A service whose calls answer after a delay (or never), counting the futures dropped
//! before they finished.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Answers `Ok(req)` after `delay` (`None`: never), records dropped unfinished calls.
#[derive(Clone, Default)]
pub struct Slow {
    delay: Option<Duration>,
    dropped: Arc<AtomicUsize>,
}

impl Slow {
    pub fn after(delay: Duration) -> Self {
        Self { delay: Some(delay), dropped: Arc::default() }
    }

    pub fn hang() -> Self {
        Self { delay: None, dropped: Arc::default() }
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

struct DropGuard(Arc<AtomicUsize>, bool);

impl DropGuard {
    fn finished(&mut self) {
        self.1 = true;
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl tower::Service<u32> for Slow {
    type Response = u32;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<u32, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        let delay = self.delay;
        let mut guard = DropGuard(self.dropped.clone(), false);
        Box::pin(async move {
            match delay {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            guard.finished();
            Ok(req)
        })
    }
}
