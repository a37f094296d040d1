//! Writing request frames to a worker's stdin.
//!
//! On Unix the pipe is non-blocking and registered with the reactor: a call writes its
//! frame straight into the pipe from the caller's task when nothing is queued ahead of it
//! (one `write` syscall, no task hop). Only what the pipe cannot take at once is queued for
//! the writer task, which waits for the pipe to drain. Frames are never interleaved: the
//! direct write happens only while the queue is empty, under the queue's lock.
//!
//! Elsewhere every frame goes through the writer task.

use std::collections::VecDeque;
use std::io;
use std::sync::{Mutex, MutexGuard};

use tokio::process::ChildStdin;
use tokio::sync::{watch, Notify};

#[cfg(unix)]
type Pipe = std::sync::Arc<tokio::net::unix::pipe::Sender>;

struct Queue {
    frames: VecDeque<Vec<u8>>,
    /// Bytes of the front frame already written.
    #[cfg_attr(not(unix), allow(dead_code))]
    offset: usize,
    closed: bool,
    #[cfg(unix)]
    pipe: Option<Pipe>,
}

/// The write half of a worker's stdin, shared by its handles and its writer task.
pub(crate) struct FrameWriter {
    queue: Mutex<Queue>,
    work: Notify,
}

/// `send` could not take the frame.
#[derive(Debug)]
pub(crate) enum SendError {
    /// stdin is closed (shutdown began or writing failed before).
    Closed,
    /// Writing failed now.
    Io(io::Error),
}

impl FrameWriter {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        palisade_core::sync::lock(&self.queue)
    }

    /// Writes `frame` now if the pipe takes it, or queues it for the writer task.
    pub(crate) fn send(&self, frame: Vec<u8>) -> Result<(), SendError> {
        let mut q = self.lock();
        if q.closed {
            return Err(SendError::Closed);
        }
        #[cfg(unix)]
        if q.frames.is_empty() {
            if let Some(pipe) = &q.pipe {
                match pipe.try_write(&frame) {
                    Ok(n) if n == frame.len() => return Ok(()),
                    Ok(n) => q.offset = n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => q.offset = 0,
                    Err(e) => return Err(SendError::Io(e)),
                }
            }
        }
        q.frames.push_back(frame);
        drop(q);
        self.work.notify_one();
        Ok(())
    }
}

// === Unix: non-blocking pipe ===

#[cfg(unix)]
impl FrameWriter {
    pub(crate) fn new(stdin: ChildStdin) -> io::Result<(std::sync::Arc<Self>, WriterTask)> {
        let fd = stdin.into_owned_fd()?;
        let pipe = std::sync::Arc::new(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?);
        let writer = std::sync::Arc::new(Self {
            queue: Mutex::new(Queue { frames: VecDeque::new(), offset: 0, closed: false, pipe: Some(pipe) }),
            work: Notify::new(),
        });
        Ok((writer.clone(), WriterTask { writer }))
    }

    /// Writes what is queued; `Ok(())` once the queue is empty.
    async fn drain(&self) -> io::Result<()> {
        loop {
            let pipe = {
                let mut q = self.lock();
                let Some(pipe) = q.pipe.clone() else { return Ok(()) };
                loop {
                    let offset = q.offset;
                    let Some(front) = q.frames.front() else { return Ok(()) };
                    let len = front.len();
                    match pipe.try_write(&front[offset..]) {
                        Ok(n) => {
                            q.offset += n;
                            if q.offset == len {
                                q.frames.pop_front();
                                q.offset = 0;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                pipe
            };
            pipe.writable().await?;
        }
    }

    fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.frames.clear();
        // Dropping the last reference closes the pipe: the worker reads end of file.
        q.pipe = None;
    }
}

// === elsewhere: the writer task owns stdin ===

#[cfg(not(unix))]
impl FrameWriter {
    pub(crate) fn new(stdin: ChildStdin) -> io::Result<(std::sync::Arc<Self>, WriterTask)> {
        let writer = std::sync::Arc::new(Self {
            queue: Mutex::new(Queue { frames: VecDeque::new(), offset: 0, closed: false }),
            work: Notify::new(),
        });
        Ok((writer.clone(), WriterTask { writer, stdin: Some(stdin) }))
    }

    fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.frames.clear();
    }
}

/// The task side: writes queued frames until shutdown (after writing what was queued) or
/// a write error, then closes stdin.
pub(crate) struct WriterTask {
    writer: std::sync::Arc<FrameWriter>,
    #[cfg(not(unix))]
    stdin: Option<ChildStdin>,
}

impl WriterTask {
    #[cfg(unix)]
    async fn drain(&mut self) -> io::Result<()> {
        self.writer.drain().await
    }

    #[cfg(not(unix))]
    async fn drain(&mut self) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let Some(stdin) = self.stdin.as_mut() else { return Ok(()) };
        loop {
            let frame = {
                let mut q = self.writer.lock();
                q.offset = 0;
                match q.frames.pop_front() {
                    Some(f) => f,
                    None => return Ok(()),
                }
            };
            stdin.write_all(&frame).await?;
            stdin.flush().await?;
        }
    }

    /// Runs until shutdown or a write error; `Err` on a write error.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> io::Result<()> {
        let result = loop {
            if let Err(e) = self.drain().await {
                break Err(e);
            }
            if *shutdown.borrow() {
                break Ok(());
            }
            // `notify_one` keeps a permit when nobody waits: no wake-up is lost.
            tokio::select! {
                () = self.writer.work.notified() => {},
                _ = shutdown.wait_for(|s| *s) => {},
            }
        };
        self.writer.close();
        result
    }
}
