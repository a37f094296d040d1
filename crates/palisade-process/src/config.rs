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
    /// Where to look up a program named without a `/` (default: the parent's `PATH`).
    pub(crate) search_path: Option<OsString>,
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
            search_path: None,
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

    /// Resolves a program named without a path separator to the file that will run, once,
    /// when the service is built; see [`resolve_program`].
    ///
    /// The directories searched are, in order of preference: the builder's
    /// [`search_path`](ProcessBuilder::search_path), the `PATH` given to children with
    /// `env("PATH", ..)` (the one the child would use), the parent's `PATH`.
    pub(crate) fn resolve(&mut self) -> Result<(), ConfigError> {
        let child_path = self.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
        let search = self.search_path.clone().or(child_path).or_else(|| std::env::var_os("PATH"));
        if let Some(found) = resolve_program(&self.program_os, search.as_deref())? {
            self.program_os = found.into_os_string();
        }
        Ok(())
    }
}

/// The directories searched when there is no `PATH` at all (what `execvp` uses).
#[cfg(unix)]
const DEFAULT_SEARCH_PATH: &str = "/bin:/usr/bin";
#[cfg(not(unix))]
const DEFAULT_SEARCH_PATH: &str = "";

/// Finds `program` in the `PATH`-style list `search_path` (the default list when `None`).
///
/// A program whose name holds a path separator is used as it is (`Ok(None)`), like
/// `execvp` does. Otherwise the first directory holding an executable file of that name
/// wins and its path is returned. Relative directories in the list are skipped: they
/// would be resolved against a working directory that may not be the child's.
///
/// # Errors
///
/// A [`ConfigError`] for the field `program` when no directory holds it.
pub(crate) fn resolve_program(
    program: &OsStr,
    search_path: Option<&OsStr>,
) -> Result<Option<PathBuf>, ConfigError> {
    if has_separator(program) {
        return Ok(None);
    }
    let search = search_path.unwrap_or_else(|| OsStr::new(DEFAULT_SEARCH_PATH));
    for dir in std::env::split_paths(search) {
        if !dir.is_absolute() {
            continue;
        }
        for candidate in candidates(&dir, program) {
            if is_executable(&candidate) {
                return Ok(Some(candidate));
            }
        }
    }
    Err(ConfigError::new(
        "program",
        format!("`{}` was not found in the search path (PATH)", program.to_string_lossy()),
    ))
}

fn has_separator(program: &OsStr) -> bool {
    let bytes = program.as_encoded_bytes();
    bytes.contains(&b'/') || (cfg!(windows) && bytes.contains(&b'\\'))
}

#[cfg(unix)]
fn candidates(dir: &std::path::Path, program: &OsStr) -> Vec<PathBuf> {
    vec![dir.join(program)]
}

#[cfg(not(unix))]
fn candidates(dir: &std::path::Path, program: &OsStr) -> Vec<PathBuf> {
    let plain = dir.join(program);
    let mut exe = plain.clone().into_os_string();
    exe.push(".exe");
    vec![plain, PathBuf::from(exe)]
}

#[cfg(unix)]
fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
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
        ///
        /// A relative program path with a `/` (such as `./tool`) is not resolved by
        /// palisade: with a working directory set, whether it is found from the parent's or
        /// the child's directory is up to `std::process::Command` and the platform. Give an
        /// absolute path, or a bare name looked up in the search path.
        pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
            self.settings.current_dir = Some(dir.into());
            self
        }

        /// The directories (a `PATH`-style list, `:`-separated on Unix) in which a program
        /// named without a `/` is looked up when the service is built. By default: the
        /// `PATH` set with [`env`](Self::env) if any, else the parent's `PATH`. The list is
        /// only searched here; it is not passed to children (allow `PATH` with
        /// [`env_allow`](Self::env_allow) for that).
        pub fn search_path(mut self, path: impl AsRef<OsStr>) -> Self {
            self.settings.search_path = Some(path.as_ref().to_owned());
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
        self.listeners.push(Arc::new(crate::panic::guard_listener(listener)));
        self
    }

    /// Validates the settings and builds the service.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the program is empty or contains NUL, the timeout is zero,
    /// `max_concurrency` is zero or above `tokio::sync::Semaphore::MAX_PERMITS`, an
    /// environment name is empty or contains `=` or NUL, or the program, named without a
    /// `/`, is not in the search path (field `program`; see
    /// [`search_path`](Self::search_path)). A program given by path is checked when it is
    /// spawned.
    pub fn build(mut self) -> Result<ProcessService, ConfigError> {
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
        self.settings.resolve()?;
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
    /// Where a program named without a `/` is looked up (a `PATH`-style list); default:
    /// the parent's `PATH`.
    #[serde(default)]
    pub search_path: Option<String>,
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
        if let Some(path) = self.search_path {
            b = b.search_path(path);
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

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// A fresh directory of this test process (any temporary directory will do).
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palisade-process-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file(dir: &Path, name: &str, mode: u32) {
        let path = dir.join(name);
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn finds_the_first_executable_in_the_search_path() {
        let root = scratch("first");
        let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
        for d in [&a, &b, &c] {
            std::fs::create_dir_all(d).unwrap();
        }
        file(&a, "tool", 0o644); // not executable: skipped
        std::fs::create_dir_all(b.join("tool")).unwrap(); // a directory: skipped
        file(&c, "tool", 0o755);
        let search = std::env::join_paths([&a, &b, &c]).unwrap();
        let found = resolve_program(OsStr::new("tool"), Some(&search)).unwrap();
        assert_eq!(found, Some(c.join("tool")));
    }

    #[test]
    fn relative_directories_are_skipped_and_a_missing_program_is_a_config_error() {
        let root = scratch("relative");
        file(&root, "tool", 0o755);
        // "." and "" would resolve against the parent's working directory: never searched.
        let err = resolve_program(OsStr::new("tool"), Some(OsStr::new(".::relative/dir"))).unwrap_err();
        assert_eq!(err.field(), "program");
        assert!(err.rule().contains("`tool`"), "{err}");
        let err = resolve_program(OsStr::new("tool"), Some(OsStr::new(""))).unwrap_err();
        assert_eq!(err.field(), "program");
    }

    #[test]
    fn odd_names_and_odd_search_paths() {
        let root = scratch("odd");
        let (good, file_entry) = (root.join("good dir/"), root.join("plain-file"));
        std::fs::create_dir_all(&good).unwrap();
        std::fs::write(&file_entry, b"x").unwrap();
        file(&good, "my tool", 0o755);
        file(&good, "only-group-x", 0o610);
        std::os::unix::fs::symlink(good.join("my tool"), good.join("linked")).unwrap();
        std::os::unix::fs::symlink(&root, good.join("dir-link")).unwrap();
        // An entry that is a file, an empty entry, a relative one, then the good directory
        // (with a trailing slash and a space in its name).
        let mut search = file_entry.clone().into_os_string();
        search.push("::rel:");
        search.push(good.as_os_str());
        let found = |name: &str| resolve_program(OsStr::new(name), Some(&search));
        assert_eq!(found("my tool").unwrap(), Some(good.join("my tool")), "a name with a space");
        assert_eq!(found("linked").unwrap(), Some(good.join("linked")), "a symlink to an executable");
        assert_eq!(found("only-group-x").unwrap(), Some(good.join("only-group-x")), "any x bit");
        for missing in ["dir-link", "..", ".", "my", "tool", "my tool ", "plain-file"] {
            assert_eq!(found(missing).unwrap_err().field(), "program", "{missing:?}");
        }
        // A name with a slash is never searched, even when a search path holds it.
        assert_eq!(resolve_program(OsStr::new("good dir/my tool"), Some(&search)).unwrap(), None);
    }

    #[test]
    fn a_program_with_a_slash_is_used_as_given() {
        assert_eq!(resolve_program(OsStr::new("./tool"), Some(OsStr::new(""))).unwrap(), None);
        assert_eq!(resolve_program(OsStr::new("/no/such/tool"), None).unwrap(), None);
    }

    #[test]
    fn build_resolves_without_passing_path_to_the_child() {
        let dir = scratch("build");
        file(&dir, "tool", 0o755);
        let mut settings = Settings::new(OsStr::new("tool"));
        settings.search_path = Some(dir.clone().into_os_string());
        settings.resolve().unwrap();
        assert_eq!(settings.program_os, dir.join("tool").into_os_string());
        assert_eq!(&*settings.program, "tool", "messages keep the name as given");
        let cmd = crate::run::command(&settings, &crate::ProcessRequest::new()).unwrap();
        assert_eq!(cmd.as_std().get_program(), dir.join("tool").as_os_str());
        assert!(
            cmd.as_std().get_envs().all(|(k, _)| k != "PATH"),
            "the search path is not given to the child"
        );
    }

    #[test]
    fn a_path_set_for_the_child_is_the_one_searched() {
        let dir = scratch("child-path");
        file(&dir, "tool", 0o755);
        let mut settings = Settings::new(OsStr::new("tool"));
        settings.env.push(("PATH".into(), dir.clone().into_os_string()));
        settings.resolve().unwrap();
        assert_eq!(settings.program_os, dir.join("tool").into_os_string());
    }
}
