//! Scaling: making members (with backoff), retiring them, housekeeping and publishing the
//! member list to snapshots.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::classify::Classify;
use palisade_core::time::{deadline_after, deadline_from_now};
use palisade_core::BoxError;
use tokio::time::Instant;
use tower_service::Service;

use super::{drop_guarded, MakeFuture, Member, Worker};
use crate::error::panicked;
use crate::event::{PoolEvent, ScaleDownReason, ScaleUpReason};
use crate::member::{MemberState, MemberView};
use crate::scaling::PoolLoad;

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
    pub(super) fn start_making(&mut self, cx: &mut Context<'_>) {
        if self.making.is_some() {
            return;
        }
        if let Some(retry_at) = &mut self.retry_at {
            if retry_at.as_mut().poll(cx).is_pending() {
                return;
            }
            self.retry_at = None;
        }
        let n = self.members.len();
        let sizing = self.sizing;
        // A replacement is reported as one even when the pool is below its minimum (the
        // eviction took it there): metrics show the churn.
        let reason = if !sizing.can_grow(n) {
            return;
        } else if self.replacements_owed > 0 {
            ScaleUpReason::Replacement
        } else if n < sizing.min {
            ScaleUpReason::Minimum
        } else if self.desired.is_some_and(|d| d > n) {
            ScaleUpReason::Operator
        } else if n == 0 && !self.queue.is_empty() {
            ScaleUpReason::Queue
        } else if self.desired.is_some() || self.draining.is_some() {
            return;
        } else {
            let load = self.pool_load(Instant::now());
            let policy = &mut self.policy;
            match catch_unwind(AssertUnwindSafe(|| policy.scale_up(&load))) {
                Ok(Some(reason)) => reason,
                Ok(None) => return,
                Err(_) => {
                    tracing::warn!(target: "palisade", pool = %self.shared.name, "the scaling policy panicked");
                    return;
                }
            }
        };
        // The `MakeService` is user code run on the worker's task: a panic in it counts as a
        // failed make (with backoff), never ends the worker.
        let name = self.shared.name.clone();
        let make_panicked = |payload: Box<dyn std::any::Any + Send>| -> BoxError {
            panicked("make service", name.clone(), "make", &*payload).into()
        };
        match catch_unwind(AssertUnwindSafe(|| self.make.poll_ready(cx))) {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(Err(err))) => self.make_failed(&err.into(), cx),
            Err(payload) => self.make_failed(&make_panicked(payload), cx),
            Ok(Poll::Ready(Ok(()))) => {
                let (make, target) = (&mut self.make, &self.target);
                let fut = match catch_unwind(AssertUnwindSafe(|| make.call(target.clone()))) {
                    Ok(fut) => fut,
                    Err(payload) => return self.make_failed(&make_panicked(payload), cx),
                };
                let make_timeout = self.config.make_timeout;
                let timeout_name = name.clone();
                let fut: MakeFuture<S> = Box::pin(async move {
                    let made = AssertUnwindSafe(async move {
                        match make_timeout {
                            None => fut.await.map_err(Into::into),
                            Some(limit) => match tokio::time::timeout_at(deadline_from_now(limit), fut).await
                            {
                                Ok(res) => res.map_err(Into::into),
                                Err(_) => {
                                    Err(palisade_core::rejection::TimedOut::new(timeout_name, limit).into())
                                }
                            },
                        }
                    });
                    match made.catch_unwind().await {
                        Ok(res) => res,
                        Err(payload) => Err(panicked("make service", name, "make", &*payload).into()),
                    }
                });
                self.making = Some((fut, reason));
            }
        }
    }

    /// Drives the member being made; returns `true` when one joined.
    pub(super) fn poll_making(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((fut, reason)) = &mut self.making else { return false };
        let Poll::Ready(result) = fut.as_mut().poll(cx) else { return false };
        let reason = *reason;
        self.making = None;
        match result {
            Ok(service) => {
                if self.young_evictions == 0 {
                    self.backoff.succeed();
                }
                if reason == ScaleUpReason::Replacement || self.replacements_owed > 0 {
                    self.replacements_owed = self.replacements_owed.saturating_sub(1);
                }
                let id = self.next_id;
                self.next_id += 1;
                let state =
                    Arc::new(MemberState::new(id, self.judge.clone(), self.config.peak_ewma_default_rtt));
                self.publish_join(&state);
                self.members.push(Member {
                    service,
                    ready: false,
                    state,
                    last_active: Instant::now(),
                    active: false,
                    check_due: false,
                });
                self.shared.made.increment();
                self.shared.publish(PoolEvent::ScaledUp { member: id, members: self.members.len(), reason });
                true
            }
            Err(err) => {
                self.make_failed(&err, cx);
                false
            }
        }
    }

    pub(super) fn make_failed(&mut self, err: &BoxError, cx: &mut Context<'_>) {
        self.shared.make_failures.increment();
        let retry_in = self.backoff.fail();
        let mut sleep = Box::pin(tokio::time::sleep_until(deadline_from_now(retry_in)));
        // Register for the wake-up now: nothing else may wake the worker.
        let _ = sleep.as_mut().poll(cx);
        self.retry_at = Some(sleep);
        tracing::debug!(target: "palisade", pool = %self.shared.name, error = %err, "making a member failed");
        self.shared.publish(PoolEvent::MakeFailed {
            attempt: self.backoff.failures(),
            retry_in,
            error: err.to_string().into(),
        });
    }

    pub(super) fn housekeep(&mut self) {
        let now = Instant::now();
        for m in &mut self.members {
            if m.active || m.state.counters.in_flight() > 0 {
                m.last_active = now;
                m.active = false;
            }
        }
        if self.draining.is_some() {
            return;
        }
        if let (Some(check), Some(next)) = (&self.health_check, self.next_check) {
            if now >= next {
                for m in &mut self.members {
                    m.check_due = true;
                }
                self.next_check = Some(deadline_after(now, check.interval));
            }
        }
        if self.desired.is_none() {
            let load = self.pool_load(now);
            let policy = &mut self.policy;
            match catch_unwind(AssertUnwindSafe(|| policy.scale_down(&load))) {
                Ok(Some(reason)) => {
                    if self.sizing.can_shrink(self.members.len()) {
                        self.retire_one(now, Duration::ZERO, reason);
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(target: "palisade", pool = %self.shared.name, "the scaling policy panicked");
                }
            }
        }
        if let Some(idle) = self.config.idle_timeout {
            while self.sizing.can_shrink(self.members.len())
                && self.retire_one(now, idle, ScaleDownReason::Idle)
            {}
        }
    }

    /// The load a scaling policy sees.
    pub(super) fn pool_load(&self, now: Instant) -> PoolLoad {
        let members = self.members.len();
        let in_flight: usize = self.members.iter().map(|m| m.state.counters.in_flight()).sum();
        let idle_members = self.members.iter().filter(|m| m.state.counters.in_flight() == 0).count();
        PoolLoad {
            members,
            idle_members,
            in_flight,
            capacity: members.saturating_mul(self.config.member_concurrency),
            queued: self.queue.len(),
            min_size: self.sizing.min,
            max_size: self.sizing.max,
            now,
        }
    }

    /// Works towards an operator's target: retires idle members while there are too many
    /// (busy ones when their calls finish), and forgets the target once reached.
    pub(super) fn shrink_to_desired(&mut self) {
        let Some(d) = self.desired else { return };
        if self.draining.is_some() {
            self.desired = None;
            self.shared.shrink_pending.store(false, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        while self.members.len() > d && self.retire_one(now, Duration::ZERO, ScaleDownReason::Operator) {}
        let n = self.members.len();
        self.shared.shrink_pending.store(n > d, std::sync::atomic::Ordering::Relaxed);
        // Growing is finished by `start_making`/`poll_making`; the target is forgotten on
        // the turn after it is reached.
        if n == d && self.making.is_none() {
            self.desired = None;
        }
    }

    /// Retires the longest-idle member with no call in flight that has been idle for at
    /// least `idle_for`.
    pub(super) fn retire_one(&mut self, now: Instant, idle_for: Duration, reason: ScaleDownReason) -> bool {
        let candidate = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                m.state.counters.in_flight() == 0 && now.saturating_duration_since(m.last_active) >= idle_for
            })
            .min_by_key(|(_, m)| m.last_active)
            .map(|(i, _)| i);
        let Some(i) = candidate else { return false };
        let m = self.members.remove(i);
        self.publish_leave(i);
        self.shared.retired.increment();
        self.shared.publish(PoolEvent::ScaledDown {
            member: m.state.counters.id,
            members: self.members.len(),
            reason,
        });
        drop_guarded(m, &self.shared.name, "a member");
        true
    }

    /// Drops every member (shutdown, or every service gone).
    pub(super) fn drop_members(&mut self) {
        for m in self.members.drain(..) {
            drop_guarded(m, &self.shared.name, "a member");
        }
    }

    /// Shows a member that joined (at the end of `members`) to snapshots.
    pub(super) fn publish_join(&self, state: &Arc<MemberState<C>>) {
        let mut views = self.shared.members();
        views.push(state.clone() as Arc<dyn MemberView>);
        self.shared.member_count.set(views.len() as i64);
    }

    /// Hides the member that was at `i` in `members` from snapshots.
    pub(super) fn publish_leave(&self, i: usize) {
        let mut views = self.shared.members();
        if i < views.len() {
            views.remove(i);
        }
        self.shared.member_count.set(views.len() as i64);
    }

    pub(super) fn publish_members(&self) {
        let views: Vec<Arc<dyn MemberView>> =
            self.members.iter().map(|m| m.state.clone() as Arc<dyn MemberView>).collect();
        self.shared.member_count.set(views.len() as i64);
        *self.shared.members() = views;
    }
}
