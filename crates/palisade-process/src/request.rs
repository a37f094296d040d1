//! What one call to a [`ProcessService`](crate::ProcessService) adds to the command.

use std::ffi::{OsStr, OsString};

/// One call: extra arguments, extra environment variables and stdin bytes.
///
/// Arguments are passed to the program as a vector, never through a shell: `"; rm -rf /"`
/// is one literal argument.
///
/// ```
/// use palisade_process::ProcessRequest;
///
/// let req = ProcessRequest::new().arg("--json").env("LANG", "C").stdin("hello");
/// assert_eq!(req.arguments().len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessRequest {
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) stdin: Option<Vec<u8>>,
}

impl ProcessRequest {
    /// A request that adds nothing: the program runs with its fixed arguments and no stdin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an argument (after the service's fixed arguments).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for this call (over the service's environment).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Bytes written to the child's stdin, which is then closed. Without it stdin is
    /// `/dev/null`.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The extra arguments.
    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }

    /// The extra environment variables.
    pub fn environment(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// The stdin bytes, if any.
    pub fn stdin_bytes(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }
}

impl From<Vec<u8>> for ProcessRequest {
    /// A request whose stdin is `bytes`.
    fn from(bytes: Vec<u8>) -> Self {
        Self::new().stdin(bytes)
    }
}

impl From<&[u8]> for ProcessRequest {
    /// A request whose stdin is `bytes`.
    fn from(bytes: &[u8]) -> Self {
        Self::new().stdin(bytes)
    }
}

impl From<&str> for ProcessRequest {
    /// A request whose stdin is `text`.
    fn from(text: &str) -> Self {
        Self::new().stdin(text)
    }
}
