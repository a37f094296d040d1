//! Building a [`ProcessService`]: program, fixed arguments, environment, limits.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::event::Listener;

use crate::event::{ProcessEvent, Telemetry};
use crate::service::{ProcessService, Shared};

/// Default cap on stdout and on stderr: 1 MiB each.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;
/// Default timeout of one call: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit of children running at once: 64.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

/// What to do when a child writes more than its stdout or stderr cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
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

/// The validated settings shared by every clone of a service.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) program: Arc<str>,
    pub(crate) program_os: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) env_allow: Vec<OsString>,
    pub(crate) inherit_env: bool,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_stdout: usize,
    pub(crate) max_stderr: usize,
    pub(crate) on_output_limit: OutputLimitAction,
    pub(crate) max_concurrency: usize,
    pub(crate) kill_stragglers: bool,
}

impl Settings {
    pub(crate) fn new(program: &OsStr) -> Self {
        let program_os = program.to_owned();
        Self {
            program: Arc::from(program_os.to_string_lossy().as_ref()),
            program_os,
            args: Vec::new(),
            env: Vec::new(),
            env_allow: Vec::new(),
            inherit_env: false,
            current_dir: None,
            timeout: Some(DEFAULT_TIMEOUT),
            max_stdout: DEFAULT_OUTPUT_LIMIT,
            max_stderr: DEFAULT_OUTPUT_LIMIT,
            on_output_limit: OutputLimitAction::Truncate,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            kill_stragglers: true,
        }
    }

    /// Checks the command part (program, arguments, environment).
    pub(crate) fn validate_command(&self) -> Result<(), ConfigError> {
        ensure(!self.program_os.is_empty(), "program", "must not be empty")?;
        ensure(!has_nul(&self.program_os), "program", "must not contain NUL")?;
        ensure(self.args.iter().all(|a| !has_nul(a)), "args", "must not contain NUL")?;
        for (k, v) in &self.env {
            ensure(valid_env_key(k), "env", "names must be non-empty without `=` or NUL")?;
            ensure(!has_nul(v), "env", "values must not contain NUL")?;
        }
        ensure(
            self.env_allow.iter().all(|k| valid_env_key(k)),
            "env_allow",
            "names must be non-empty without `=` or NUL",
        )
    }
}

/// Builds a [`ProcessService`]; from [`ProcessService::builder`].
pub struct ProcessBuilder {
    settings: Settings,
    name: Option<Arc<str>>,
    listeners: Vec<Listener<ProcessEvent>>,
}

impl std::fmt::Debug for ProcessBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("settings", &self.settings)
            .field("name", &self.name)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

/// The command options shared by [`ProcessBuilder`] and
/// [`WorkerBuilder`](crate::WorkerBuilder): both keep them in `settings: Settings` and their
/// name in `name: Option<Arc<str>>`.
macro_rules! command_options {
    () => {
        /// The name used in events and metric labels (default `"process"` for a
        /// `ProcessService`, `"worker"` for workers).
        pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
            self.name = Some(name.into());
            self
        }

        /// Appends a fixed argument, passed on every spawn (before a request's own
        /// arguments, for a `ProcessService`).
        pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
            self.settings.args.push(arg.as_ref().to_owned());
            self
        }

        /// Appends fixed arguments.
        pub fn args<I, A>(mut self, args: I) -> Self
        where
            I: IntoIterator<Item = A>,
            A: AsRef<OsStr>,
        {
            self.settings.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
            self
        }

        /// Sets an environment variable on every spawn.
        pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
            self.settings.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
            self
        }

        /// Passes the parent's variable `key` through to children (when it is set). The child
        /// environment is otherwise empty: nothing leaks by default.
        pub fn env_allow(mut self, key: impl AsRef<OsStr>) -> Self {
            self.settings.env_allow.push(key.as_ref().to_owned());
            self
        }

        /// Passes the parent's whole environment through instead of clearing it (off by
        /// default).
        pub fn inherit_env(mut self, inherit: bool) -> Self {
            self.settings.inherit_env = inherit;
            self
        }

        /// The working directory of children (default: the parent's).
        pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
            self.settings.current_dir = Some(dir.into());
            self
        }
    };
}

pub(crate) use command_options;

impl ProcessBuilder {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Self { settings: Settings::new(program.as_ref()), name: None, listeners: Vec::new() }
    }

    command_options!();

    /// Kills the process group of a call still running after `timeout` (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = Some(timeout);
        self
    }

    /// Lets calls run as long as the child does (put a timeout layer outside instead).
    pub fn no_timeout(mut self) -> Self {
        self.settings.timeout = None;
        self
    }

    /// Keeps at most `bytes` of stdout (default 1 MiB).
    pub fn max_stdout(mut self, bytes: usize) -> Self {
        self.settings.max_stdout = bytes;
        self
    }

    /// Keeps at most `bytes` of stderr (default 1 MiB).
    pub fn max_stderr(mut self, bytes: usize) -> Self {
        self.settings.max_stderr = bytes;
        self
    }

    /// What happens when a child writes past a cap (default: truncate and flag).
    pub fn on_output_limit(mut self, action: OutputLimitAction) -> Self {
        self.settings.on_output_limit = action;
        self
    }

    /// At most `n` children at once (default 64): `poll_ready` waits for a slot.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.settings.max_concurrency = n;
        self
    }

    /// Whether to kill what is left of the child's process group (background grandchildren)
    /// once the child itself has exited (default `true`: no process outlives its call).
    pub fn kill_stragglers(mut self, kill: bool) -> Self {
        self.settings.kill_stragglers = kill;
        self
    }

    /// Registers a listener for the service's events.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&ProcessEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Validates the settings and builds the service.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the program is empty or contains NUL, the timeout is zero,
    /// `max_concurrency` is zero or above `tokio::sync::Semaphore::MAX_PERMITS`, or an
    /// environment name is empty or contains `=` or NUL.
    pub fn build(self) -> Result<ProcessService, ConfigError> {
        let s = &self.settings;
        s.validate_command()?;
        if let Some(t) = s.timeout {
            ensure_nonzero_duration("timeout", t)?;
        }
        ensure(s.max_concurrency >= 1, "max_concurrency", "must be at least 1")?;
        ensure(
            s.max_concurrency <= tokio::sync::Semaphore::MAX_PERMITS,
            "max_concurrency",
            "must not exceed tokio's Semaphore::MAX_PERMITS",
        )?;
        let name = self.name.unwrap_or_else(|| Arc::from("process"));
        let telemetry = Arc::new(Telemetry::new(name, self.listeners));
        Ok(ProcessService::from_shared(Arc::new(Shared::new(self.settings, telemetry))))
    }
}

pub(crate) fn has_nul(s: &OsStr) -> bool {
    s.as_encoded_bytes().contains(&0)
}

pub(crate) fn valid_env_key(k: &OsStr) -> bool {
    let b = k.as_encoded_bytes();
    !b.is_empty() && !b.contains(&b'=') && !b.contains(&0)
}

/// A [`ProcessService`] configuration read with `serde` (feature `serde`).
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
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The program to run.
    pub program: String,
    /// Name in events and metrics.
    #[serde(default)]
    pub name: Option<String>,
    /// Fixed arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Fixed environment variables.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Parent variables passed through.
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Pass the whole parent environment through.
    #[serde(default)]
    pub inherit_env: bool,
    /// Working directory.
    #[serde(default)]
    pub current_dir: Option<PathBuf>,
    /// Timeout of one call (`"30s"`); `null` for none. Default 30 s.
    #[serde(default = "default_timeout", with = "palisade_core::duration::serde::option")]
    pub timeout: Option<Duration>,
    /// stdout cap in bytes.
    #[serde(default = "default_limit")]
    pub max_stdout: usize,
    /// stderr cap in bytes.
    #[serde(default = "default_limit")]
    pub max_stderr: usize,
    /// `"truncate"` or `"kill"`.
    #[serde(default)]
    pub on_output_limit: OutputLimitAction,
    /// Children at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Kill background grandchildren once the child exits.
    #[serde(default = "default_true")]
    pub kill_stragglers: bool,
}

#[cfg(feature = "serde")]
#[allow(clippy::unnecessary_wraps)]
fn default_timeout() -> Option<Duration> {
    Some(DEFAULT_TIMEOUT)
}

#[cfg(feature = "serde")]
fn default_limit() -> usize {
    DEFAULT_OUTPUT_LIMIT
}

#[cfg(feature = "serde")]
fn default_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

#[cfg(feature = "serde")]
fn default_true() -> bool {
    true
}

#[cfg(feature = "serde")]
impl ProcessConfig {
    /// The equivalent builder.
    pub fn into_builder(self) -> ProcessBuilder {
        let mut b = ProcessService::builder(&self.program)
            .args(&self.args)
            .inherit_env(self.inherit_env)
            .max_stdout(self.max_stdout)
            .max_stderr(self.max_stderr)
            .on_output_limit(self.on_output_limit)
            .max_concurrency(self.max_concurrency)
            .kill_stragglers(self.kill_stragglers);
        if let Some(name) = self.name {
            b = b.name(name);
        }
        for (k, v) in &self.env {
            b = b.env(k, v);
        }
        for k in &self.env_allow {
            b = b.env_allow(k);
        }
        if let Some(dir) = self.current_dir {
            b = b.current_dir(dir);
        }
        b = match self.timeout {
            Some(t) => b.timeout(t),
            None => b.no_timeout(),
        };
        b
    }

    /// Validates and builds the service.
    pub fn build(self) -> Result<ProcessService, ConfigError> {
        self.into_builder().build()
    }
}
