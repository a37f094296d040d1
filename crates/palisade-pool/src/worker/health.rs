//! Health: periodic health checks and evicting unhealthy members.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use palisade_core::classify::Classify;
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use tower_service::Service;

use super::{drop_guarded, Worker};
use crate::error::panicked;
use crate::event::{EvictReason, PoolEvent};

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
    pub(super) fn start_checks(&mut self) {
        let Some(check) = &self.health_check else { return };
        for m in &mut self.members {
            if !(m.check_due && m.ready) {
                continue;
            }
            m.check_due = false;
            m.ready = false;
            let service = &mut m.service;
            let call = match catch_unwind(AssertUnwindSafe(|| service.call((check.request)()))) {
                Ok(call) => call,
                Err(payload) => {
                    let err = panicked("health check", self.shared.name.clone(), "health_check", &*payload);
                    // Evicted by the caller (`dispatch`) right after.
                    m.state.poison(err.message().into());
                    continue;
                }
            };
            let judge = self.judge.clone();
            let timeout = check.timeout;
            let name = self.shared.name.clone();
            let fut = async move {
                match tokio::time::timeout_at(deadline_from_now(timeout), call).await {
                    Ok(result) => !judge.classifier.classify(&result).is_failure(),
                    Err(_) => false,
                }
            };
            // The check runs on the worker's task: a panic in the member's future (or the
            // classifier) evicts the member instead of ending the worker.
            let fut = AssertUnwindSafe(fut).catch_unwind().map(move |r| {
                r.map_err(|payload| {
                    panicked("health check", name, "health_check", &*payload).message().into()
                })
            });
            self.checks.push((m.state.counters.id, Box::pin(fut)));
        }
    }

    pub(super) fn poll_checks(&mut self, cx: &mut Context<'_>) {
        let mut k = 0;
        while k < self.checks.len() {
            let Poll::Ready(outcome) = self.checks[k].1.as_mut().poll(cx) else {
                k += 1;
                continue;
            };
            let (id, _) = self.checks.swap_remove(k);
            let reason = match outcome {
                Ok(true) => continue,
                Ok(false) => EvictReason::HealthCheck,
                Err(message) => EvictReason::Panicked(message),
            };
            if let Some(i) = self.members.iter().position(|m| m.state.counters.id == id) {
                self.evict(i, reason);
            }
        }
    }

    pub(super) fn evict_unhealthy(&mut self) {
        let mut i = self.members.len();
        while i > 0 {
            i -= 1;
            let state = &self.members[i].state;
            if state.counters.is_unhealthy() {
                let reason = match state.panic_message() {
                    Some(message) => EvictReason::Panicked(message),
                    None => EvictReason::ConsecutiveFailures(self.judge.threshold),
                };
                self.evict(i, reason);
            }
        }
    }

    pub(super) fn evict(&mut self, i: usize, reason: EvictReason) {
        let m = self.members.remove(i);
        self.publish_leave(i);
        if m.state.counters.served.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            // It failed before finishing a single call: making its replacement backs off
            // like a failed make, so a factory of broken members cannot churn.
            self.young_evictions += 1;
            let retry_in = self.backoff.fail();
            self.retry_at = Some(Box::pin(tokio::time::sleep_until(deadline_from_now(retry_in))));
        } else {
            self.young_evictions = 0;
        }
        self.shared.evicted.increment();
        self.replacements_owed = (self.replacements_owed + 1).min(self.sizing.max);
        self.shared.publish(PoolEvent::Evicted {
            member: m.state.counters.id,
            members: self.members.len(),
            reason,
        });
        // Calls in flight on it keep running: their callers own them.
        drop_guarded(m, &self.shared.name, "a member");
    }
}
