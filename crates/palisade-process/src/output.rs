//! What a finished child process produced.

use std::fmt;
use std::time::Duration;

/// Why palisade killed a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KillReason {
    /// The call's timeout passed.
    Timeout,
    /// The response future was dropped before the process finished.
    Cancelled,
    /// stdout or stderr went over its cap and the service is set to kill.
    OutputLimit,
    /// A worker did not exit within its grace period after its stdin was closed.
    ShutdownGrace,
    /// A worker broke the framing protocol.
    ProtocolError,
}

impl KillReason {
    /// A short stable name (`"timeout"`, `"cancelled"`, …) for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::OutputLimit => "output_limit",
            Self::ShutdownGrace => "shutdown_grace",
            Self::ProtocolError => "protocol_error",
        }
    }
}

impl fmt::Display for KillReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Termination {
    /// It exited with this code.
    Exited(i32),
    /// A signal it did not expect (not sent by palisade) ended it.
    Signaled(i32),
    /// palisade killed its process group, for this reason.
    Killed(KillReason),
}

impl Termination {
    #[cfg(unix)]
    pub(crate) fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Exited(code),
            (None, Some(sig)) => Self::Signaled(sig),
            (None, None) => Self::Exited(-1),
        }
    }

    #[cfg(not(unix))]
    pub(crate) fn from_status(status: std::process::ExitStatus) -> Self {
        Self::Exited(status.code().unwrap_or(-1))
    }

    /// `true` when the process exited with code 0.
    pub const fn success(&self) -> bool {
        matches!(self, Self::Exited(0))
    }

    /// The exit code, if the process exited by itself.
    pub const fn code(&self) -> Option<i32> {
        match self {
            Self::Exited(code) => Some(*code),
            _ => None,
        }
    }

    /// The signal that ended the process, if one did that palisade did not send.
    pub const fn signal(&self) -> Option<i32> {
        match self {
            Self::Signaled(sig) => Some(*sig),
            _ => None,
        }
    }

    /// Why palisade killed the process, if it did.
    pub const fn kill_reason(&self) -> Option<KillReason> {
        match self {
            Self::Killed(reason) => Some(*reason),
            _ => None,
        }
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exited with code {code}"),
            Self::Signaled(sig) => write!(f, "killed by signal {sig}"),
            Self::Killed(reason) => write!(f, "killed by palisade ({reason})"),
        }
    }
}

/// The result of running a child process: how it ended, what it wrote, how long it took.
///
/// Like [`std::process::Output`], a process that ran is an `Ok` value whatever its exit
/// code; an [`ExitClassifier`](crate::ExitClassifier) turns it into success, retryable
/// failure or failure for retry and circuit-breaker layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOutput {
    pub(crate) termination: Termination,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stdout_truncated: bool,
    pub(crate) stderr_truncated: bool,
    pub(crate) duration: Duration,
    pub(crate) pid: u32,
}

impl ProcessOutput {
    /// How the process ended.
    pub fn termination(&self) -> Termination {
        self.termination
    }

    /// `true` when the process exited with code 0.
    pub fn success(&self) -> bool {
        self.termination.success()
    }

    /// The exit code, if the process exited by itself.
    pub fn code(&self) -> Option<i32> {
        self.termination.code()
    }

    /// `true` when palisade killed the process because its timeout passed.
    pub fn timed_out(&self) -> bool {
        self.termination == Termination::Killed(KillReason::Timeout)
    }

    /// What the process wrote to stdout (at most the configured cap).
    pub fn stdout(&self) -> &[u8] {
        &self.stdout
    }

    /// What the process wrote to stderr (at most the configured cap).
    pub fn stderr(&self) -> &[u8] {
        &self.stderr
    }

    /// Takes stdout out of the output.
    pub fn into_stdout(self) -> Vec<u8> {
        self.stdout
    }

    /// Whether stdout went over its cap (the excess was dropped).
    pub fn stdout_truncated(&self) -> bool {
        self.stdout_truncated
    }

    /// Whether stderr went over its cap (the excess was dropped).
    pub fn stderr_truncated(&self) -> bool {
        self.stderr_truncated
    }

    /// Time from spawn to exit.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The process id the child had.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}
