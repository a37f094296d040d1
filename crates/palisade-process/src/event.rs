//! Events and counters of child processes.
//!
//! Every [`ProcessService`](crate::ProcessService) and every
//! [`MakeWorker`](crate::MakeWorker) (with the workers it spawns) publishes
//! [`ProcessEvent`]s to listeners registered with the builder's `on_event` or
//! [`ProcessHandle::on_event`](crate::ProcessHandle::on_event), and to `tracing` (target
//! `palisade`). The same handle reads the counters as a
//! [`ProcessSnapshot`](crate::ProcessSnapshot).
//!

use std::sync::Arc;
use std::time::Duration;

use palisade_core::event::{Event, EventBus, FieldValue, Listener};
use palisade_core::metric::{Counter, Gauge, Histogram};
use tracing::Level;

use crate::handle::ProcessSnapshot;
use crate::output::{KillReason, Termination};

/// Something that happened to a child process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessEvent {
    /// A child process started.
    Spawned {
        /// Its process id.
        pid: u32,
    },
    /// A child could not be started.
    SpawnFailed {
        /// The `io::ErrorKind` of the failure, as text.
        error: String,
    },
    /// A child exited by itself (or was ended by a signal palisade did not send).
    Exited {
        /// Its process id.
        pid: u32,
        /// The exit code, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// Time from spawn to exit.
        duration: Duration,
    },
    /// palisade killed a child's process group.
    Killed {
        /// Its process id (and process group id).
        pid: u32,
        /// Why.
        reason: KillReason,
        /// Time from spawn to kill.
        duration: Duration,
    },
    /// A worker process died or broke the protocol while it was serving; its in-flight
    /// requests failed.
    Crashed {
        /// Its process id.
        pid: u32,
        /// How it ended.
        termination: Termination,
        /// Requests that were in flight and failed.
        in_flight: usize,
    },
}

impl Event for ProcessEvent {
    /// `pid`, `error` (spawn failed), `outcome` (`success`, `failure`, `signaled`, `killed`)
    /// with `code` or `signal` (exited), `reason` (killed: `timeout`, `cancelled`,
    /// `output_limit`, …), `elapsed_ms` (how long it ran), `in_flight` (calls lost in a crash).
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::Spawned { pid } => record("pid", (*pid).into()),
            Self::SpawnFailed { error } => record("error", error.clone().into()),
            Self::Exited { pid, code, signal, duration } => {
                record("pid", (*pid).into());
                let outcome = match (code, signal) {
                    (Some(0), _) => "success",
                    (Some(_), _) => "failure",
                    (None, _) => "signaled",
                };
                record("outcome", outcome.into());
                if let Some(code) = code {
                    record("code", i64::from(*code).into());
                }
                if let Some(signal) = signal {
                    record("signal", i64::from(*signal).into());
                }
                record("elapsed_ms", (*duration).into());
            }
            Self::Killed { pid, reason, duration } => {
                record("pid", (*pid).into());
                record("outcome", "killed".into());
                record("reason", reason.as_str().into());
                record("elapsed_ms", (*duration).into());
            }
            Self::Crashed { pid, termination, in_flight } => {
                record("pid", (*pid).into());
                record("reason", termination.to_string().into());
                record("in_flight", (*in_flight).into());
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Spawned { .. } => "spawned",
            Self::SpawnFailed { .. } => "spawn_failed",
            Self::Exited { .. } => "exited",
            Self::Killed { .. } => "killed",
            Self::Crashed { .. } => "crashed",
        }
    }

    fn level(&self) -> Level {
        match self {
            Self::Spawned { .. } | Self::Exited { .. } => Level::DEBUG,
            Self::Killed { .. } => Level::INFO,
            Self::SpawnFailed { .. } | Self::Crashed { .. } => Level::WARN,
        }
    }
}

/// State shared by a service, its clones and its children: name, events, counters.
#[derive(Debug)]
pub(crate) struct Telemetry {
    pub(crate) name: Arc<str>,
    pub(crate) events: EventBus<ProcessEvent>,
    spawned: Counter,
    spawn_failed: Counter,
    exited_success: Counter,
    exited_failure: Counter,
    killed_timeout: Counter,
    killed_cancelled: Counter,
    killed_output_limit: Counter,
    killed_other: Counter,
    crashed: Counter,
    running: Gauge,
    duration: Histogram,
}

impl Telemetry {
    pub(crate) fn new(name: Arc<str>, listeners: Vec<Listener<ProcessEvent>>) -> Self {
        let n = &*name;
        Self {
            events: EventBus::with_listeners("process", name.clone(), listeners),
            spawned: Counter::new("palisade_process_spawned_total", n),
            spawn_failed: Counter::new("palisade_process_spawn_failed_total", n),
            exited_success: Counter::labeled("palisade_process_exited_total", n, ("outcome", "success")),
            exited_failure: Counter::labeled("palisade_process_exited_total", n, ("outcome", "failure")),
            killed_timeout: Counter::labeled("palisade_process_killed_total", n, ("reason", "timeout")),
            killed_cancelled: Counter::labeled("palisade_process_killed_total", n, ("reason", "cancelled")),
            killed_output_limit: Counter::labeled(
                "palisade_process_killed_total",
                n,
                ("reason", "output_limit"),
            ),
            killed_other: Counter::labeled("palisade_process_killed_total", n, ("reason", "other")),
            crashed: Counter::new("palisade_process_crashed_total", n),
            running: Gauge::new("palisade_process_running", n),
            duration: Histogram::new("palisade_process_duration_seconds", n),
            name,
        }
    }

    pub(crate) fn spawned(&self, pid: u32) {
        self.spawned.increment();
        self.running.add(1);
        self.events.publish(ProcessEvent::Spawned { pid });
    }

    pub(crate) fn spawn_failed(&self, err: &std::io::Error) {
        self.spawn_failed.increment();
        if self.events.is_observed() {
            self.events.publish(ProcessEvent::SpawnFailed { error: err.kind().to_string() });
        }
    }

    /// A child ended; `crashed_in_flight` is set for a worker that crashed while serving.
    pub(crate) fn ended(
        &self,
        pid: u32,
        termination: Termination,
        duration: Duration,
        crashed_in_flight: Option<usize>,
    ) {
        self.running.add(-1);
        self.duration.record(duration);
        match termination {
            Termination::Exited(0) => self.exited_success.increment(),
            Termination::Exited(_) | Termination::Signaled(_) => self.exited_failure.increment(),
            Termination::Killed(KillReason::Timeout) => self.killed_timeout.increment(),
            Termination::Killed(KillReason::Cancelled) => self.killed_cancelled.increment(),
            Termination::Killed(KillReason::OutputLimit) => self.killed_output_limit.increment(),
            Termination::Killed(_) => self.killed_other.increment(),
        }
        match termination {
            Termination::Killed(reason) => {
                self.events.publish(ProcessEvent::Killed { pid, reason, duration });
            }
            _ => self.events.publish(ProcessEvent::Exited {
                pid,
                code: termination.code(),
                signal: termination.signal(),
                duration,
            }),
        }
        if let Some(in_flight) = crashed_in_flight {
            self.crashed.increment();
            self.events.publish(ProcessEvent::Crashed { pid, termination, in_flight });
        }
    }

    pub(crate) fn snapshot(&self) -> ProcessSnapshot {
        ProcessSnapshot {
            spawned: self.spawned.get(),
            spawn_failed: self.spawn_failed.get(),
            exited_success: self.exited_success.get(),
            exited_failure: self.exited_failure.get(),
            killed_timeout: self.killed_timeout.get(),
            killed_cancelled: self.killed_cancelled.get(),
            killed_output_limit: self.killed_output_limit.get(),
            killed_other: self.killed_other.get(),
            crashed: self.crashed.get(),
            running: self.running.get(),
            mean_duration: self.duration.mean(),
            max_duration: self.duration.max(),
        }
    }
}
