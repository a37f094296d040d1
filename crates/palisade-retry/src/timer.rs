//! A lazily created, re-armable sleep: no timer is registered until one is needed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

pin_project! {
    #[project = TimerProj]
    #[derive(Debug)]
    pub(crate) enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

impl Timer {
    /// Fires at `at`, reusing the sleep when there is one.
    pub(crate) fn arm(mut self: Pin<&mut Self>, at: Instant) {
        match self.as_mut().project() {
            TimerProj::Armed { sleep } => sleep.reset(at),
            TimerProj::Idle => self.set(Self::Armed { sleep: sleep_until(at) }),
        }
    }

    /// Arms the timer for `pending` (taking it) if it is set, then polls it: timers are only
    /// registered once the guarded future has returned `Pending` (a call that answers at
    /// once never touches the timer wheel).
    pub(crate) fn poll_lazy(
        mut self: Pin<&mut Self>,
        pending: &mut Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if let Some(at) = pending.take() {
            self.as_mut().arm(at);
        }
        self.poll_fired(cx)
    }

    /// Ready once the armed instant has passed; never ready when idle.
    pub(crate) fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project() {
            TimerProj::Armed { sleep } => sleep.poll(cx),
            TimerProj::Idle => Poll::Pending,
        }
    }
}
