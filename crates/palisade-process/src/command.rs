//! The command part of every configuration: which program runs, with what arguments and
//! environment ([`CommandConfig`]), its validation and the program lookup in `PATH`.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;

use palisade_core::config::{ensure, ConfigError};

/// Which program a [`ProcessService`](crate::ProcessService) or a
/// [`MakeWorker`](crate::MakeWorker) runs, with what arguments and environment: the part
/// [`ProcessConfig`](crate::ProcessConfig) and [`MakeWorkerConfig`](crate::MakeWorkerConfig)
/// share (their field `command`). In a config file its fields sit at the top level, next
/// to the others (`{"program": "/bin/cat", "timeout": "2s"}`).
///
/// Strings in a config file are UTF-8; arguments and variables that are not are set with
/// the builders (`arg`, `env`), which take any `OsStr`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct CommandConfig {
    /// The program to run. A program named without a `/` (`"cargo"`) is looked up when the
    /// service is built, in [`search_path`](Self::search_path), else the `PATH` set in
    /// [`env`](Self::env), else the parent's `PATH`; the child runs the file found. Must not
    /// be empty (there is no default).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_os::one"))]
    pub program: OsString,
    /// The name used in events and metric labels. Default: `"process"` for a
    /// `ProcessService`, `"worker"` for workers.
    pub name: Option<String>,
    /// Fixed arguments, passed on every spawn (before a request's own arguments, for a
    /// `ProcessService`). Default: none.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_os::list"))]
    pub args: Vec<OsString>,
    /// Environment variables set on every spawn, in order (a later one wins). In a config
    /// file: an object of names and values. Default: none.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_os::env"))]
    pub env: Vec<(OsString, OsString)>,
    /// Parent variables passed through to children (when set). The child environment is
    /// otherwise empty: nothing leaks by default. Default: none.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_os::list"))]
    pub env_allow: Vec<OsString>,
    /// Passes the parent's whole environment through instead of clearing it. Default
    /// `false`.
    pub inherit_env: bool,
    /// The working directory of children. Default: the parent's.
    ///
    /// A relative program path with a `/` (such as `./tool`) is not resolved by palisade:
    /// with a working directory set, whether it is found from the parent's or the child's
    /// directory is up to `std::process::Command` and the platform. Give an absolute path,
    /// or a bare name looked up in the search path.
    pub current_dir: Option<PathBuf>,
    /// The directories (a `PATH`-style list, `:`-separated on Unix) in which a program
    /// named without a `/` is looked up when the service is built. Default: the `PATH` set
    /// in [`env`](Self::env) if any, else the parent's `PATH`. The list is only searched
    /// here; it is not passed to children (allow `PATH` with [`env_allow`](Self::env_allow)
    /// for that).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_os::option"))]
    pub search_path: Option<OsString>,
}

impl CommandConfig {
    /// A command running `program`, every other field at its default.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self { program: program.as_ref().to_owned(), ..Self::default() }
    }

    /// Checks the program, arguments and environment (the program is looked up when the
    /// service is built, not here).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `program` empty or containing NUL, an argument
    /// containing NUL (`args`), an environment name empty or containing `=` or NUL (`env`,
    /// `env_allow`), a value containing NUL (`env`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.program.is_empty(), "program", "must not be empty")?;
        ensure(!has_nul(&self.program), "program", "must not contain NUL")?;
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
    /// The directories searched are, in order of preference: [`search_path`](Self::search_path),
    /// the `PATH` given to children in [`env`](Self::env) (the one the child would use), the
    /// parent's `PATH`.
    pub(crate) fn resolve(&self) -> Result<Program, ConfigError> {
        let child_path = self.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
        let search = self.search_path.clone().or(child_path).or_else(|| std::env::var_os("PATH"));
        let path = match resolve_program(&self.program, search.as_deref())? {
            Some(found) => found.into_os_string(),
            None => self.program.clone(),
        };
        Ok(Program { name: Arc::from(self.program.to_string_lossy().as_ref()), path })
    }
}

/// The program a validated command runs.
#[derive(Debug)]
pub(crate) struct Program {
    /// The program as given, for messages.
    pub(crate) name: Arc<str>,
    /// The file that runs (found in the search path, or as given).
    pub(crate) path: OsString,
}

/// The setters [`ProcessBuilder`](crate::ProcessBuilder) and
/// [`MakeWorkerBuilder`](crate::MakeWorkerBuilder) share: the command's (both keep a
/// [`CommandConfig`] in `self.config.command`) and `on_event` (both keep their listeners in
/// `self.listeners`).
macro_rules! shared_setters {
    () => {
        /// Registers a listener for the events of the service, or of every worker this
        /// factory spawns. A listener that panics misses that event (the panic is logged).
        pub fn on_event<L>(mut self, listener: L) -> Self
        where
            L: Fn(&crate::ProcessEvent) + Send + Sync + 'static,
        {
            self.listeners.push(std::sync::Arc::new(listener));
            self
        }

        /// Sets [`CommandConfig::name`](crate::CommandConfig::name).
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.config.command.name = Some(name.into());
            self
        }

        /// Appends to [`CommandConfig::args`](crate::CommandConfig::args).
        pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
            self.config.command.args.push(arg.as_ref().to_owned());
            self
        }

        /// Appends to [`CommandConfig::args`](crate::CommandConfig::args).
        pub fn args<I, A>(mut self, args: I) -> Self
        where
            I: IntoIterator<Item = A>,
            A: AsRef<OsStr>,
        {
            self.config.command.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
            self
        }

        /// Appends to [`CommandConfig::env`](crate::CommandConfig::env).
        pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
            self.config.command.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
            self
        }

        /// Appends to [`CommandConfig::env_allow`](crate::CommandConfig::env_allow).
        pub fn env_allow(mut self, key: impl AsRef<OsStr>) -> Self {
            self.config.command.env_allow.push(key.as_ref().to_owned());
            self
        }

        /// Sets [`CommandConfig::inherit_env`](crate::CommandConfig::inherit_env).
        pub fn inherit_env(mut self, inherit: bool) -> Self {
            self.config.command.inherit_env = inherit;
            self
        }

        /// Sets [`CommandConfig::current_dir`](crate::CommandConfig::current_dir).
        pub fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.config.command.current_dir = Some(dir.into());
            self
        }

        /// Sets [`CommandConfig::search_path`](crate::CommandConfig::search_path).
        pub fn search_path(mut self, path: impl AsRef<OsStr>) -> Self {
            self.config.command.search_path = Some(path.as_ref().to_owned());
            self
        }
    };
}

pub(crate) use shared_setters;

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

pub(crate) fn has_nul(s: &OsStr) -> bool {
    s.as_encoded_bytes().contains(&0)
}

pub(crate) fn valid_env_key(k: &OsStr) -> bool {
    let b = k.as_encoded_bytes();
    !b.is_empty() && !b.contains(&b'=') && !b.contains(&0)
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
        let mut command = CommandConfig::new("tool");
        command.search_path = Some(dir.clone().into_os_string());
        let program = command.resolve().unwrap();
        assert_eq!(program.path, dir.join("tool").into_os_string());
        assert_eq!(&*program.name, "tool", "messages keep the name as given");
        let cmd = crate::run::command(&command, &program, &crate::ProcessRequest::new()).unwrap();
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
        let mut command = CommandConfig::new("tool");
        command.env.push(("PATH".into(), dir.clone().into_os_string()));
        assert_eq!(command.resolve().unwrap().path, dir.join("tool").into_os_string());
    }
}
