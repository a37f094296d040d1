//! [`MakeWorkerConfig`]: every option of a [`MakeWorker`], its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use tokio::sync::Semaphore;

use crate::codec::LengthPrefixed;
use crate::command::CommandConfig;
use crate::make_worker::{MakeWorker, MakeWorkerBuilder};

/// Default limit of requests in flight on one worker: 64.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default largest frame, either way: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Default time a worker gets to exit after its stdin is closed: 5 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Every option of a [`MakeWorker`] and the [`WorkerProcess`](crate::WorkerProcess)es it
/// spawns: the builder's storage ([`MakeWorker::builder`]) and, with the feature `serde`,
/// the settings-file form. The framing is chosen in code
/// ([`MakeWorkerBuilder::json`] or [`MakeWorkerBuilder::codec`]) because it carries types.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_process::MakeWorkerConfig;
///
/// let config: MakeWorkerConfig = serde_json::from_str(r#"{
///     "program": "./my-worker",
///     "args": ["--binary"],
///     "max_in_flight": 32,
///     "shutdown_grace": "2s"
/// }"#).unwrap();
/// let make = config.build().unwrap();
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct MakeWorkerConfig {
    /// The worker program, its fixed arguments and environment (at the top level of a
    /// config file).
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub command: CommandConfig,
    /// Requests in flight on one worker at once: `poll_ready` waits. From 1 to tokio's
    /// `Semaphore::MAX_PERMITS`. Default 64.
    pub max_in_flight: usize,
    /// Largest frame accepted or sent, in bytes (at least 16, at most `u32::MAX`); a worker
    /// sending a bigger one is killed as broken. Default 16 MiB.
    pub max_frame_len: usize,
    /// How long a worker may take to exit after its stdin is closed before it is killed
    /// (`"5s"`; not zero; a huge value saturates to "effectively never"). Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub shutdown_grace: Duration,
    /// Forwards the worker's stderr to `tracing` (target `palisade`, level INFO) when
    /// `true`; discards it when `false`. Default `true`.
    pub log_stderr: bool,
}

impl Default for MakeWorkerConfig {
    fn default() -> Self {
        Self {
            command: CommandConfig::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            log_stderr: true,
        }
    }
}

impl MakeWorkerConfig {
    /// Checks every option (the program is looked up in the search path by
    /// [`build`](Self::build), not here).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: see [`CommandConfig::validate`];
    /// `max_in_flight` zero or over tokio's limit; `max_frame_len` under 16 bytes or over
    /// 32 bits; `shutdown_grace` zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.command.validate()?;
        ensure(self.max_in_flight >= 1, "max_in_flight", "must be at least 1")?;
        ensure(
            self.max_in_flight <= Semaphore::MAX_PERMITS,
            "max_in_flight",
            "must not exceed tokio's Semaphore::MAX_PERMITS",
        )?;
        ensure(self.max_frame_len >= 16, "max_frame_len", "must be at least 16 bytes")?;
        ensure(u32::try_from(self.max_frame_len).is_ok(), "max_frame_len", "must fit in 32 bits")?;
        ensure_nonzero_duration("shutdown_grace", self.shutdown_grace)
    }

    /// Validates and builds a length-prefixed worker factory (no event listeners; use
    /// `MakeWorkerBuilder::from(config)` for another codec or listeners).
    ///
    /// # Errors
    ///
    /// As [`MakeWorkerBuilder::build`].
    pub fn build(self) -> Result<MakeWorker<LengthPrefixed>, ConfigError> {
        MakeWorkerBuilder::from(self).build()
    }
}
