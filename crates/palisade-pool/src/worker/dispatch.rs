//! Dispatch: picking a member by the strategy, polling members for readiness, sending
//! requests.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::classify::Classify;
use palisade_core::BoxError;
use tokio::time::Instant;
use tower_service::Service;

use super::{drop_guarded, Message, Worker};
use crate::config::Strategy;
use crate::error::panicked;
use crate::event::EvictReason;
use crate::member::Tracked;

impl<M, T, S, Req, C> Worker<M, T, S, Req, C>
where
    M: Service<T, Response = S>,
    M::Error: Into<BoxError>,
    M::Future: Send + 'static,
    T: Clone,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
{
    pub(super) fn eligible(&self, i: usize) -> bool {
        let m = &self.members[i];
        m.ready
            && m.state.counters.in_flight() < self.config.member_concurrency
            && !m.state.counters.is_unhealthy()
    }

    pub(super) fn pick(&mut self) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        match self.config.strategy {
            Strategy::RoundRobin => {
                let i = (0..n).map(|k| (self.next_turn + k) % n).find(|&i| self.eligible(i))?;
                self.next_turn = i + 1;
                Some(i)
            }
            Strategy::LeastInFlight => {
                let i = (0..n)
                    .map(|k| (self.next_turn + k) % n)
                    .filter(|&i| self.eligible(i))
                    .min_by_key(|&i| self.members[i].state.counters.in_flight())?;
                self.next_turn = i + 1;
                Some(i)
            }
            Strategy::PowerOfTwoChoices | Strategy::PeakEwma => {
                self.candidates.clear();
                for i in 0..n {
                    if self.eligible(i) {
                        self.candidates.push(i);
                    }
                }
                match self.candidates.len() {
                    0 => None,
                    1 => Some(self.candidates[0]),
                    len => {
                        let a = self.rng.below(len as u64) as usize;
                        let mut b = self.rng.below(len as u64 - 1) as usize;
                        if b >= a {
                            b += 1;
                        }
                        let (a, b) = (self.candidates[a], self.candidates[b]);
                        Some(if self.load(b) < self.load(a) { b } else { a })
                    }
                }
            }
        }
    }

    pub(super) fn load(&self, i: usize) -> u64 {
        let c = &self.members[i].state.counters;
        let in_flight = c.in_flight() as u64;
        match self.config.strategy {
            Strategy::PeakEwma => c.rtt_nanos().saturating_mul(in_flight + 1),
            _ => in_flight,
        }
    }

    /// Polls readiness of the member at `i`; evicts it on error. Returns whether it is
    /// still there.
    pub(super) fn poll_member(&mut self, i: usize, cx: &mut Context<'_>) -> bool {
        let m = &mut self.members[i];
        if m.ready || m.state.counters.is_unhealthy() {
            return true;
        }
        match catch_unwind(AssertUnwindSafe(|| m.service.poll_ready(cx))) {
            Ok(Poll::Ready(Ok(()))) => {
                m.ready = true;
                true
            }
            Ok(Poll::Ready(Err(err))) => {
                let err: BoxError = err.into();
                self.evict(i, EvictReason::NotReady(err.to_string().into()));
                false
            }
            Ok(Poll::Pending) => true,
            Err(payload) => {
                let err = panicked("member", self.shared.name.clone(), "poll_ready", &*payload);
                self.evict(i, EvictReason::Panicked(err.message().into()));
                false
            }
        }
    }

    /// Polls every member not yet ready: afterwards each one is ready, or its `poll_ready`
    /// registered this turn's waker, or it was evicted.
    pub(super) fn poll_members(&mut self, cx: &mut Context<'_>) {
        let mut i = 0;
        while i < self.members.len() {
            if self.poll_member(i, cx) {
                i += 1;
            }
        }
    }

    pub(super) fn dispatch(&mut self, cx: &mut Context<'_>) {
        let checks_due = self.members.iter().any(|m| m.check_due);
        if self.queue.is_empty() && !checks_due {
            return;
        }
        self.poll_members(cx);
        if checks_due {
            self.start_checks();
            self.evict_unhealthy();
            // A health check spends the readiness of the member it calls: poll those members
            // again, so each is ready or has registered a wake-up. Returning `Pending` with a
            // member marked not ready and no waker registered would leave requests queued
            // behind it until something unrelated woke the worker.
            self.poll_members(cx);
        }
        while !self.queue.is_empty() {
            let Some(i) = self.pick() else { break };
            let Some(message) = self.queue.pop() else { break };
            self.shared.queued.add(-1);
            if message.reply.is_closed() {
                drop_guarded(message, &self.shared.name, "a cancelled request");
                continue;
            }
            if self.call(i, message) {
                self.poll_member(i, cx);
            }
        }
        if !self.queue.is_empty() {
            let pruned = self.queue.prune_cancelled(cx, &self.shared.name);
            if pruned > 0 {
                self.shared.queued.add(-(pruned as i64));
            }
        }
    }

    /// Sends `message` to the member at `i`; returns whether the member is still there (a
    /// member whose `call` panics is evicted, and only this request fails).
    pub(super) fn call(&mut self, i: usize, message: Message<Req, S::Response>) -> bool {
        let Message { request, reply, slot, .. } = message;
        // The request left the queue: its place is free again.
        drop(slot);
        let m = &mut self.members[i];
        m.ready = false;
        m.active = true;
        let call = match catch_unwind(AssertUnwindSafe(|| m.service.call(request))) {
            Ok(call) => call,
            Err(payload) => {
                let err = panicked("member", self.shared.name.clone(), "call", &*payload);
                let message: Arc<str> = err.message().into();
                let _ = reply.send(Err(err.into()));
                self.evict(i, EvictReason::Panicked(message));
                return false;
            }
        };
        m.state.counters.in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.shared.in_flight.add(1);
        // The start is read for peak-EWMA and for completion events (when observed).
        let started = (self.judge.decay.is_some() || self.shared.events.is_observed()).then(Instant::now);
        let future = Tracked::new(call, m.state.clone(), started);
        // If the caller went away meanwhile, the call is dropped (cancelled) right here.
        if let Err(unsent) = reply.send(Ok(Box::pin(future))) {
            drop_guarded(unsent, &self.shared.name, "a cancelled call");
        }
        true
    }
}
