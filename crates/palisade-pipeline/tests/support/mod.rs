#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts live values and remembers the highest count seen.
#[derive(Clone, Debug, Default)]
pub struct AliveCounter {
    inner: Arc<(AtomicUsize, AtomicUsize)>,
}

impl AliveCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn token(&self) -> AliveToken {
        let now = self.inner.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.1.fetch_max(now, Ordering::SeqCst);
        AliveToken { counter: self.clone() }
    }

    pub fn alive(&self) -> usize {
        self.inner.0.load(Ordering::SeqCst)
    }

    pub fn max_alive(&self) -> usize {
        self.inner.1.load(Ordering::SeqCst)
    }
}

/// Alive while it exists.
#[derive(Debug)]
pub struct AliveToken {
    counter: AliveCounter,
}

impl Drop for AliveToken {
    fn drop(&mut self) {
        self.counter.inner.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An item that counts itself alive.
#[derive(Debug)]
pub struct Tracked {
    pub value: u64,
    _token: AliveToken,
}

impl Tracked {
    pub fn new(value: u64, counter: &AliveCounter) -> Self {
        Self { value, _token: counter.token() }
    }
}

/// Lets every other task run until the runtime is idle (paused clock: the sleep completes only
/// when nothing else can run).
pub async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}
