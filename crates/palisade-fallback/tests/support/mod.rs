//! Helpers shared by the fallback tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use palisade_fallback::FallbackEvent;

/// Sets its flag when dropped.
#[derive(Debug)]
pub struct DropFlag(pub Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A future that never completes and flags its drop.
#[derive(Debug)]
pub struct PendingForever<T> {
    _flag: DropFlag,
    _t: std::marker::PhantomData<T>,
}

impl<T> PendingForever<T> {
    pub fn new(flag: &Arc<AtomicBool>) -> Self {
        Self { _flag: DropFlag(flag.clone()), _t: std::marker::PhantomData }
    }
}

impl<T> Unpin for PendingForever<T> {}

impl<T> Future for PendingForever<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        Poll::Pending
    }
}

/// Records every event's kind and details.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<FallbackEvent>>>,
}

impl Recorder {
    pub fn listener(&self) -> impl Fn(&FallbackEvent) + Send + Sync + 'static {
        let events = self.events.clone();
        move |e: &FallbackEvent| events.lock().unwrap().push(e.clone())
    }

    pub fn take(&self) -> Vec<FallbackEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

/// Counts calls.
#[derive(Clone, Debug, Default)]
pub struct Calls(pub Arc<AtomicUsize>);

impl Calls {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
