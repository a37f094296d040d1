//! The worker's side of the protocol: write a worker program in a few lines.
//!
//! [`serve_stdio`] reads request frames from stdin, runs the handler for each (concurrently,
//! as Tokio tasks), and writes each answer to stdout with the request's id, in whatever
//! order the answers are ready. It returns when stdin is closed and every answer is
//! written: the graceful shutdown [`WorkerProcess`](crate::WorkerProcess) asks for.
//!
//! # Example
//!
//! A worker that upper-cases its input, using length-prefixed binary frames:
//!
//! ```no_run
//! use palisade_process::codec::LengthPrefixed;
//! use palisade_process::worker::serve_stdio;
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     serve_stdio(LengthPrefixed, |req: Vec<u8>| async move {
//!         Ok::<_, std::convert::Infallible>(req.to_ascii_uppercase())
//!     })
//!     .await
//! }
//! ```
//!
//! Write nothing else to stdout in a worker: any byte that is not a frame is a protocol
//! error and gets the worker killed. Log to stderr.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::sync::Arc;

use palisade_core::panic::{payload_message, CatchUnwind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::codec::{FrameBuffer, ServeCodec};
use crate::error::FrameError;
use crate::make_worker::DEFAULT_MAX_FRAME_LEN;
use crate::panic::catch;

/// Limits of the worker's side.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    max_frame_len: usize,
    max_concurrency: Option<usize>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { max_frame_len: DEFAULT_MAX_FRAME_LEN, max_concurrency: None }
    }
}

impl ServeOptions {
    /// Largest request frame accepted, in bytes (default 16 MiB, as
    /// [`MakeWorkerConfig::max_frame_len`](crate::MakeWorkerConfig::max_frame_len)).
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }

    /// Runs at most `n` handlers at once; further requests wait unread in the pipe
    /// (default: no limit here, the parent's `max_in_flight` bounds them).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS));
        self
    }
}

/// Serves requests from stdin to stdout until stdin is closed; see the
/// [module docs](self).
///
/// # Errors
///
/// An `io::Error` when stdin or stdout fails, or a request frame is malformed (or the codec
/// panics decoding it): the worker should then exit non-zero, and its parent fails the
/// requests in flight.
///
/// A handler that panics (making its future or running it) does not end serving: that
/// request alone is answered with the error `the request handler panicked: <message>`
/// ([`WorkerErrorKind::Remote`](crate::WorkerErrorKind::Remote) on the parent's side).
pub async fn serve_stdio<Framing, H, Fut, E>(codec: Framing, handler: H) -> io::Result<()>
where
    Framing: ServeCodec,
    H: Fn(Framing::Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Framing::Response, E>> + Send + 'static,
    E: Display,
{
    serve_stdio_with(ServeOptions::default(), codec, handler).await
}

/// [`serve_stdio`] with limits.
///
/// # Errors
///
/// As [`serve_stdio`].
pub async fn serve_stdio_with<Framing, H, Fut, E>(
    options: ServeOptions,
    codec: Framing,
    handler: H,
) -> io::Result<()>
where
    Framing: ServeCodec,
    H: Fn(Framing::Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Framing::Response, E>> + Send + 'static,
    E: Display,
{
    #[cfg(unix)]
    if let Some((stdin, stdout)) = stdio_pipes() {
        return serve_with(options, codec, stdin, stdout, handler).await;
    }
    serve_with(options, codec, tokio::io::stdin(), tokio::io::stdout(), handler).await
}

/// stdin and stdout as non-blocking pipes registered with the reactor, when they are pipes
/// (as under a `WorkerProcess`): no blocking-pool hop per read or write, which
/// `tokio::io::stdin`/`stdout` need.
#[cfg(unix)]
fn stdio_pipes() -> Option<(tokio::net::unix::pipe::Receiver, tokio::net::unix::pipe::Sender)> {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let stdin = tokio::net::unix::pipe::Receiver::from_owned_fd(stdin).ok()?;
    let stdout = tokio::net::unix::pipe::Sender::from_owned_fd(stdout).ok()?;
    Some((stdin, stdout))
}

/// Serves requests read from `reader`, writing answers to `writer`, until `reader` ends.
///
/// [`serve_stdio`] with any pipes (useful in tests, or over a socket).
///
/// # Errors
///
/// As [`serve_stdio`].
pub async fn serve<Framing, R, W, H, Fut, E>(
    codec: Framing,
    reader: R,
    writer: W,
    handler: H,
) -> io::Result<()>
where
    Framing: ServeCodec,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: Fn(Framing::Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Framing::Response, E>> + Send + 'static,
    E: Display,
{
    serve_with(ServeOptions::default(), codec, reader, writer, handler).await
}

/// [`serve`] with limits.
///
/// # Errors
///
/// As [`serve_stdio`].
pub async fn serve_with<Framing, R, W, H, Fut, E>(
    options: ServeOptions,
    codec: Framing,
    mut reader: R,
    writer: W,
    handler: H,
) -> io::Result<()>
where
    Framing: ServeCodec,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: Fn(Framing::Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Framing::Response, E>> + Send + 'static,
    E: Display,
{
    let max_frame_len = options.max_frame_len;
    let limit = options.max_concurrency.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    let codec = Arc::new(codec);
    let (answers_tx, answers_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let write = write_answers(writer, answers_rx);
    let read = async move {
        let mut buffer = FrameBuffer::default();
        let mut tasks = JoinSet::new();
        let mut open = true;
        while open || !tasks.is_empty() {
            tokio::select! {
                read = buffer.fill(&mut reader), if open => {
                    if read? == 0 {
                        open = false;
                        if buffer.has_remainder() {
                            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stdin ended inside a frame"));
                        }
                        continue;
                    }
                    // A codec that panics loses the frame boundaries: the stream cannot go on.
                    let decode = |src: &[u8]| match catch(|| codec.decode_request(src, max_frame_len)) {
                        Ok(decoded) => decoded,
                        Err(message) => Err(FrameError::new(format!("the codec panicked: {message}"))),
                    };
                    // `delimiter` and the `Drop` of a refused frame are user code too.
                    let panicked = |message| FrameError::new(format!("the codec panicked: {message}"));
                    while let Some(frame) = catch(|| buffer.next(codec.delimiter(), max_frame_len, decode))
                        .unwrap_or_else(|message| Err(panicked(message)))
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                    {
                        let permit = match &limit {
                            Some(limit) => limit.clone().acquire_owned().await.ok(),
                            None => None,
                        };
                        // The handler is user code: a panic, when it makes the future or
                        // while it runs, answers this request with an error and nothing else.
                        let answer = catch(|| handler(frame.value)).map(CatchUnwind::new);
                        let codec = codec.clone();
                        let answers = answers_tx.clone();
                        tasks.spawn(async move {
                            let result = match answer {
                                Ok(answer) => answer.await.map_err(|p| payload_message(&*p).to_owned()),
                                Err(message) => Err(message),
                            };
                            let out = encode_answer(&*codec, frame.id, &result);
                            let _ = answers.send(out);
                            drop(permit);
                        });
                    }
                },
                Some(_joined) = tasks.join_next() => {},
            }
        }
        drop(answers_tx);
        Ok(())
    };
    let (read, write) = tokio::join!(read, write);
    read.and(write)
}

/// The frame answering request `id`; a handler's panic and an answer the codec cannot
/// encode (or panics on) become an error answer.
fn encode_answer<Framing, E>(
    codec: &Framing,
    id: u64,
    result: &Result<Result<Framing::Response, E>, String>,
) -> Vec<u8>
where
    Framing: ServeCodec,
    E: Display,
{
    let mut out = Vec::new();
    let encoded = catch(|| match result {
        Ok(Ok(response)) => codec.encode_response(id, Ok(response), &mut out),
        Ok(Err(e)) => codec.encode_response(id, Err(&e.to_string()), &mut out),
        Err(panic) => {
            codec.encode_response(id, Err(&format!("the request handler panicked: {panic}")), &mut out)
        }
    });
    let failure = match encoded {
        Ok(Ok(())) => return out,
        Ok(Err(e)) => format!("cannot encode the answer: {e}"),
        Err(panic) => format!("cannot encode the answer: the codec panicked: {panic}"),
    };
    let mut out = Vec::new();
    let _ = catch(|| codec.encode_response(id, Err(&failure), &mut out));
    out
}

async fn write_answers<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut answers: mpsc::UnboundedReceiver<Vec<u8>>,
) -> io::Result<()> {
    while let Some(first) = answers.recv().await {
        writer.write_all(&first).await?;
        while let Ok(more) = answers.try_recv() {
            writer.write_all(&more).await?;
        }
        writer.flush().await?;
    }
    writer.flush().await
}
