//! [`ProcessConfig`]: every option of a [`ProcessService`], its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};

use crate::command::CommandConfig;
use crate::service::ProcessService;

/// Default cap on stdout and on stderr: 1 MiB each.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;
/// Default timeout of one call: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit of children running at once: 64.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

/// What to do when a child writes more than its stdout or stderr cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum OutputLimitAction {
    /// Keep the first `cap` bytes, drop the rest (still reading, so the child never blocks on
    /// a full pipe) and set the `*_truncated` flag.
    #[default]
    Truncate,
    /// Kill the process group at once; the output ends as
    /// [`Killed(OutputLimit)`](crate::KillReason::OutputLimit).
    Kill,
}

/// Every option of a [`ProcessService`]: the builder's storage
/// ([`ProcessService::builder`]) and, with the feature `serde`, the settings-file form.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_process::ProcessConfig;
///
/// let config: ProcessConfig = serde_json::from_str(r#"{
///     "program": "/bin/cat",
///     "timeout": "2s",
///     "max_stdout": 65536,
///     "env_allow": ["LANG"]
/// }"#).unwrap();
/// let service = config.build().unwrap();
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ProcessConfig {
    /// The program, its fixed arguments and environment (at the top level of a config
    /// file).
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub command: CommandConfig,
    /// Kills the process group of a call still running after this long (`"30s"`); `None`
    /// (`null`) lets calls run as long as the child does (put a timeout layer outside
    /// instead). A huge value saturates to "effectively never". Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub timeout: Option<Duration>,
    /// Bytes of stdout kept, at most. Default 1 MiB.
    pub max_stdout: usize,
    /// Bytes of stderr kept, at most. Default 1 MiB.
    pub max_stderr: usize,
    /// What happens when a child writes past a cap (`"truncate"` or `"kill"`). Default:
    /// truncate and flag.
    pub on_output_limit: OutputLimitAction,
    /// Children at once: `poll_ready` waits for a slot. From 1 to tokio's
    /// `Semaphore::MAX_PERMITS`. Default 64.
    pub max_concurrency: usize,
    /// Kills what is left of the child's process group (background grandchildren) once the
    /// child itself has exited. Default `true`: no process outlives its call.
    pub kill_stragglers: bool,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            command: CommandConfig::default(),
            timeout: Some(DEFAULT_TIMEOUT),
            max_stdout: DEFAULT_OUTPUT_LIMIT,
            max_stderr: DEFAULT_OUTPUT_LIMIT,
            on_output_limit: OutputLimitAction::Truncate,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            kill_stragglers: true,
        }
    }
}

impl ProcessConfig {
    /// Checks every option (the program is looked up in the search path by
    /// [`build`](Self::build), not here).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: see [`CommandConfig::validate`]; `timeout` zero;
    /// `max_concurrency` zero or above `tokio::sync::Semaphore::MAX_PERMITS`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.command.validate()?;
        if let Some(t) = self.timeout {
            ensure_nonzero_duration("timeout", t)?;
        }
        ensure(self.max_concurrency >= 1, "max_concurrency", "must be at least 1")?;
        ensure(
            self.max_concurrency <= tokio::sync::Semaphore::MAX_PERMITS,
            "max_concurrency",
            "must not exceed tokio's Semaphore::MAX_PERMITS",
        )
    }

    /// Validates and builds the service (no event listeners; use
    /// [`ProcessBuilder::from`](crate::ProcessBuilder) to add some).
    ///
    /// # Errors
    ///
    /// As [`ProcessBuilder::build`](crate::ProcessBuilder::build).
    pub fn build(self) -> Result<ProcessService, ConfigError> {
        crate::ProcessBuilder::from(self).build()
    }
}
