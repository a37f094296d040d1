//! Child processes as tower services: one-shot commands with limits that protect the host,
//! and persistent worker processes that serve many framed requests at once.
//!
//! A child process here is just another inner service, so every tower and palisade layer
//! (retry, timeout, circuit breaker, bulkhead, pool) stacks around it.
//!
//! - [`ProcessService`]: each call spawns the program — never through a shell — with the
//!   builder's fixed arguments plus the [`ProcessRequest`]'s arguments, environment and
//!   stdin, and resolves to a [`ProcessOutput`] (how it ended, stdout, stderr, duration).
//! - [`WorkerProcess`]: a long-lived child answering requests over stdin/stdout with
//!   [length-prefixed binary or newline-delimited JSON frames](codec) carrying request ids;
//!   a [`MakeWorker`] (built by [`MakeWorker::builder`]) spawns them, one per call, so a
//!   pool can compose with it;
//!   [`worker::serve_stdio`] is the worker's side.
//! - [`ExitClassifier`]: palisade-core's [`Classify`](palisade_core::Classify) for exits.
//! - [`ProcessEvent`]s and [`ProcessSnapshot`] counters through a [`ProcessHandle`].
//!
//! # Example: retry + timeout + process
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use std::time::Duration;
//! use palisade_process::{ExitClassifier, ProcessRequest, ProcessService};
//! use palisade_retry::{Backoff, RetryLayer};
//! use palisade_timeout::TimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let cat = ProcessService::builder("/bin/cat")
//!     .timeout(Duration::from_secs(5))   // kills the whole process group
//!     .max_stdout(64 * 1024)             // truncates (and flags) past 64 KiB
//!     .max_concurrency(8)                // poll_ready waits for a child slot
//!     .build()?;
//!
//! let service = ServiceBuilder::new()
//!     // A deadline over every attempt: dropping the call kills and reaps the child.
//!     .layer(TimeoutLayer::new(Duration::from_secs(10)))
//!     // Exit 75 (EX_TEMPFAIL) and timeouts are retried, twice at most.
//!     .layer(
//!         RetryLayer::builder()
//!             .max_attempts(3)
//!             .backoff(Backoff::exponential(Duration::from_millis(50)))
//!             .classifier(ExitClassifier::new().retryable_codes([75]))
//!             .build()?,
//!     )
//!     .service(cat);
//!
//! let output = service.oneshot(ProcessRequest::new().stdin("hello")).await?;
//! assert!(output.success());
//! assert_eq!(output.stdout(), b"hello");
//! # Ok(()) }
//! ```
//!
//! # Example: a worker process behind a concurrency limit
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use std::time::Duration;
//! use palisade_bulkhead::BulkheadLayer;
//! use palisade_process::MakeWorker;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! // A worker written with `palisade_process::worker::serve_stdio`, speaking
//! // length-prefixed binary frames (`.json::<Req, Res>()` selects NDJSON instead).
//! let make = MakeWorker::builder("./target/debug/examples/echo_worker")
//!     .arg("--binary")
//!     .max_in_flight(32)                 // requests in flight on the child at once
//!     .build()?;
//! let worker = make.spawn()?;
//!
//! // At most 16 callers at a time, 64 more waiting up to 100 ms; the rest are refused
//! // with `BulkheadFull` (a 503 behind palisade's HTTP mapping).
//! let bulkhead = BulkheadLayer::builder()
//!     .name("worker")
//!     .max_concurrent(16)
//!     .when_full(palisade_core::WhenFull::wait(Duration::from_millis(100)))
//!     .max_queue(64)
//!     .build()?;
//! let service = ServiceBuilder::new().layer(bulkhead).service(worker.clone());
//! let answer = service.oneshot(b"ping".to_vec()).await?;
//! assert_eq!(answer, b"ping");
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Limits that protect the host
//!
//! - **No shell.** Arguments are a vector; `"; rm -rf /"` is one literal argument.
//! - **Program found at build.** A program named without a `/` (`"cargo"`) is looked up in
//!   the parent's `PATH` (or [`search_path`](ProcessBuilder::search_path)) when the service
//!   is built, and the child runs that file; a program not found fails the build with a
//!   `ConfigError` (field `program`). The lookup does not give `PATH` to the child.
//! - **Environment cleared** by default; pass variables through with
//!   [`env_allow`](ProcessBuilder::env_allow) or set them with
//!   [`env`](ProcessBuilder::env).
//! - **Output caps** on stdout and stderr (1 MiB each by default): memory never exceeds the
//!   cap; past it the output is truncated and flagged, or the process killed
//!   ([`OutputLimitAction`]).
//! - **Timeout** (30 s by default): the child's whole process group is killed, grandchildren
//!   included (Unix: every child leads a new process group, killed with `killpg`). A huge
//!   timeout or shutdown grace (`Duration::MAX`) saturates to "effectively never"
//!   ([`palisade_core::time`]).
//! - **User code that panics** — a [`Codec`], a [`worker`] handler, an event listener —
//!   fails its own request (a worker whose codec panics reading an answer is killed as
//!   broken, like a protocol error); the supervisor, the factory and the service go on.
//! - **Concurrency**: at most `max_concurrency` children at once, reserved in `poll_ready`.
//!
//! # No zombies, no leaks
//!
//! Dropping a response future kills the child's process group and reaps the child (in a
//! spawned task, or through Tokio's orphan reaper when the runtime is gone). When a child
//! exits by itself, what is left of its process group (background grandchildren) is killed
//! too, unless [`kill_stragglers(false)`](ProcessBuilder::kill_stragglers) is set. A child
//! that moves itself to another process group or session escapes these kills.
//!
//! Children are driven by Tokio's process driver: run the services inside a runtime with
//! I/O enabled (`enable_all()`, as `#[tokio::main]` and `#[tokio::test]` do).
//!
//! Minimum supported Rust version: 1.85. Linux is the primary target; process groups and
//! `killpg` are Unix-only.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod classify;
pub mod codec;
mod command;
mod config;
pub mod error;
mod event;
pub mod future;
mod group;
mod handle;
mod make_worker;
mod output;
mod panic;
mod request;
mod reserve;
mod run;
#[cfg(feature = "serde")]
mod serde_os;
mod service;
mod stdin;
pub mod worker;
mod worker_process;

pub use crate::builder::ProcessBuilder;
pub use crate::classify::ExitClassifier;
#[cfg(feature = "json")]
pub use crate::codec::Json;
pub use crate::codec::{Codec, LengthPrefixed, ServeCodec};
pub use crate::command::CommandConfig;
pub use crate::config::{
    OutputLimitAction, ProcessConfig, DEFAULT_MAX_CONCURRENCY, DEFAULT_OUTPUT_LIMIT, DEFAULT_TIMEOUT,
};
pub use crate::error::{FrameError, ProcessError, ProcessErrorKind, WorkerError, WorkerErrorKind};
pub use crate::event::ProcessEvent;
pub use crate::handle::{ProcessHandle, ProcessSnapshot};
pub use crate::make_worker::{
    MakeWorker, MakeWorkerBuilder, MakeWorkerConfig, DEFAULT_MAX_FRAME_LEN, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SHUTDOWN_GRACE,
};
pub use crate::output::{KillReason, ProcessOutput, Termination};
pub use crate::request::ProcessRequest;
pub use crate::service::ProcessService;
pub use crate::worker_process::WorkerProcess;
