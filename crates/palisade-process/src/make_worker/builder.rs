//! [`MakeWorkerBuilder`]: a [`MakeWorkerConfig`] plus the codec and the event listeners.

use std::ffi::OsStr;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::ConfigError;
use palisade_core::event::Listener;

use crate::codec::{Codec, LengthPrefixed};
use crate::command::CommandConfig;
use crate::event::{ProcessEvent, Telemetry};
use crate::make_worker::config::MakeWorkerConfig;
use crate::make_worker::{MakeWorker, Shared};

/// Builds a [`MakeWorker`], the factory of [`WorkerProcess`](crate::WorkerProcess)es;
/// from [`MakeWorker::builder`], or from a [`MakeWorkerConfig`] read from a file
/// (`MakeWorkerBuilder::from(config)`).
///
/// Every setter writes one field of the [`MakeWorkerConfig`] it holds; the codec and the
/// listeners are the part that cannot be written in a file.
pub struct MakeWorkerBuilder<Framing = LengthPrefixed> {
    config: MakeWorkerConfig,
    codec: Framing,
    listeners: Vec<Listener<ProcessEvent>>,
}

impl<Framing: fmt::Debug> fmt::Debug for MakeWorkerBuilder<Framing> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeWorkerBuilder")
            .field("config", &self.config)
            .field("codec", &self.codec)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl From<MakeWorkerConfig> for MakeWorkerBuilder<LengthPrefixed> {
    fn from(config: MakeWorkerConfig) -> Self {
        Self { config, codec: LengthPrefixed, listeners: Vec::new() }
    }
}

impl MakeWorkerBuilder<LengthPrefixed> {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Self::from(MakeWorkerConfig { command: CommandConfig::new(program), ..MakeWorkerConfig::default() })
    }
}

impl<Framing> MakeWorkerBuilder<Framing> {
    crate::command::shared_setters!();

    /// Sets [`MakeWorkerConfig::max_in_flight`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// Sets [`MakeWorkerConfig::max_frame_len`].
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.config.max_frame_len = bytes;
        self
    }

    /// Sets [`MakeWorkerConfig::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Sets [`MakeWorkerConfig::log_stderr`].
    pub fn log_stderr(mut self, log: bool) -> Self {
        self.config.log_stderr = log;
        self
    }

    /// Uses another framing (anything implementing [`Codec`]).
    pub fn codec<Framing2: Codec>(self, codec: Framing2) -> MakeWorkerBuilder<Framing2> {
        MakeWorkerBuilder { config: self.config, codec, listeners: self.listeners }
    }

    /// Length-prefixed binary frames of bytes (the default).
    pub fn length_prefixed(self) -> MakeWorkerBuilder<LengthPrefixed> {
        self.codec(LengthPrefixed)
    }

    /// Newline-delimited JSON frames of `Req` requests and `Res` responses.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<Req, Res>(self) -> MakeWorkerBuilder<crate::codec::Json<Req, Res>>
    where
        crate::codec::Json<Req, Res>: Codec,
    {
        self.codec(crate::codec::Json::new())
    }
}

impl<Framing: Codec> MakeWorkerBuilder<Framing> {
    /// Validates the settings and builds the worker factory.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] from [`MakeWorkerConfig::validate`], or for the field `program`
    /// when the program, named without a `/`, is not in the search path (see
    /// [`search_path`](Self::search_path)).
    pub fn build(self) -> Result<MakeWorker<Framing>, ConfigError> {
        self.config.validate()?;
        let program = self.config.command.resolve()?;
        let name = self.config.command.name.as_deref().unwrap_or("worker");
        let telemetry = Arc::new(Telemetry::new(Arc::from(name), self.listeners));
        Ok(MakeWorker::from_shared(Arc::new(Shared {
            config: self.config,
            program,
            codec: Arc::new(self.codec),
            telemetry,
        })))
    }
}
