//! A lazily created, re-armable sleep: no timer is registered (and nothing allocated) until
//! one is needed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{sleep_until, Instant, Sleep};

/// The sleep is boxed: a tokio `Sleep` is about a hundred bytes, and a response future that
/// carries one inline is copied whole on every call, timer or not. A call that never waits
/// (the pass path) pays nothing; one that does pays one allocation next to the timer
/// registration.
#[derive(Debug, Default)]
pub(crate) struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Fires at `at`, reusing the sleep when there is one.
    pub(crate) fn arm(&mut self, at: Instant) {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.0 = Some(Box::pin(sleep_until(at))),
        }
    }

    /// Arms the timer for `pending` (taking it) if it is set, then polls it: timers are only
    /// registered once the guarded future has returned `Pending` (a call that answers at
    /// once never touches the timer wheel).
    pub(crate) fn poll_lazy(&mut self, pending: &mut Option<Instant>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(at) = pending.take() {
            self.arm(at);
        }
        self.poll_fired(cx)
    }

    /// Ready once the armed instant has passed; never ready when idle.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}
