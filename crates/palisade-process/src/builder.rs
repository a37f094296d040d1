//! [`ProcessBuilder`]: a [`ProcessConfig`] plus the event listeners.

use std::ffi::OsStr;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::event::Listener;

use crate::command::CommandConfig;
use crate::config::{OutputLimitAction, ProcessConfig};
use crate::event::{ProcessEvent, Telemetry};
use crate::service::{ProcessService, Shared};

/// Builds a [`ProcessService`]; from [`ProcessService::builder`], or from a
/// [`ProcessConfig`] read from a file (`ProcessBuilder::from(config)`).
///
/// Every setter writes one field of the [`ProcessConfig`] it holds; the listeners are the
/// part that cannot be written in a file.
pub struct ProcessBuilder {
    config: ProcessConfig,
    listeners: Vec<Listener<ProcessEvent>>,
}

impl fmt::Debug for ProcessBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl From<ProcessConfig> for ProcessBuilder {
    fn from(config: ProcessConfig) -> Self {
        Self { config, listeners: Vec::new() }
    }
}

impl ProcessBuilder {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Self::from(ProcessConfig { command: CommandConfig::new(program), ..ProcessConfig::default() })
    }

    crate::command::shared_setters!();

    /// Sets [`ProcessConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Clears [`ProcessConfig::timeout`]: calls run as long as the child does.
    pub fn no_timeout(mut self) -> Self {
        self.config.timeout = None;
        self
    }

    /// Sets [`ProcessConfig::max_stdout`].
    pub fn max_stdout(mut self, bytes: usize) -> Self {
        self.config.max_stdout = bytes;
        self
    }

    /// Sets [`ProcessConfig::max_stderr`].
    pub fn max_stderr(mut self, bytes: usize) -> Self {
        self.config.max_stderr = bytes;
        self
    }

    /// Sets [`ProcessConfig::on_output_limit`].
    pub fn on_output_limit(mut self, action: OutputLimitAction) -> Self {
        self.config.on_output_limit = action;
        self
    }

    /// Sets [`ProcessConfig::max_concurrency`].
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.config.max_concurrency = n;
        self
    }

    /// Sets [`ProcessConfig::kill_stragglers`].
    pub fn kill_stragglers(mut self, kill: bool) -> Self {
        self.config.kill_stragglers = kill;
        self
    }

    /// Validates the settings and builds the service.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] from [`ProcessConfig::validate`], or for the field `program` when
    /// the program, named without a `/`, is not in the search path (see
    /// [`search_path`](Self::search_path)). A program given by path is checked when it is
    /// spawned.
    pub fn build(self) -> Result<ProcessService, ConfigError> {
        self.config.validate()?;
        let program = self.config.command.resolve()?;
        let name = self.config.command.name.as_deref().unwrap_or("process");
        let telemetry = Arc::new(Telemetry::new(Arc::from(name), self.listeners));
        Ok(ProcessService::from_shared(Arc::new(Shared::new(self.config, program, telemetry))))
    }
}
