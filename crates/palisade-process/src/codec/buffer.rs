//! [`FrameBuffer`]: bytes read from a pipe until they hold whole frames.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::FrameError;

use super::Decoded;

/// Bytes read from a pipe and not yet decoded. Never holds more than one frame plus one
/// read chunk: a decoder refuses frames over the limit before they are complete.
#[derive(Default)]
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    /// Bytes before this index hold no delimiter of the frame being read.
    searched: usize,
}

impl fmt::Debug for FrameBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBuffer")
            .field("buffered", &(self.buf.len() - self.start))
            .finish_non_exhaustive()
    }
}

impl FrameBuffer {
    /// Decodes the next complete frame, if any. With a `delimiter`, `decode` only runs when
    /// one has arrived (or the buffer is over `max_frame_len`, for the decoder to refuse).
    pub(crate) fn next<T>(
        &mut self,
        delimiter: Option<u8>,
        max_frame_len: usize,
        decode: impl FnOnce(&[u8]) -> Result<Option<Decoded<T>>, FrameError>,
    ) -> Result<Option<Decoded<T>>, FrameError> {
        if let Some(d) = delimiter {
            let from = self.searched.max(self.start);
            if !self.buf[from..].contains(&d) && self.buf.len() - self.start <= max_frame_len {
                self.searched = self.buf.len();
                return Ok(None);
            }
        }
        let available = self.buf.len() - self.start;
        let decoded = decode(&self.buf[self.start..])?;
        if let Some(d) = &decoded {
            // A codec is user code: a frame of no bytes (decoded again and again) or of more
            // bytes than there are would wedge or panic the reader, so it is a protocol error.
            if d.consumed == 0 || d.consumed > available {
                return Err(FrameError::new(format!(
                    "the codec consumed {} bytes of a {available}-byte buffer",
                    d.consumed
                )));
            }
            self.start += d.consumed;
            self.searched = self.start;
        }
        Ok(decoded)
    }

    /// Reads more bytes; `Ok(0)` at end of stream.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<usize> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.searched = 0;
        } else if self.start > 0 {
            self.buf.drain(..self.start);
            self.searched = self.searched.saturating_sub(self.start);
            self.start = 0;
        }
        self.buf.reserve(16 * 1024);
        reader.read_buf(&mut self.buf).await
    }

    /// Whether undecoded bytes remain (a truncated frame at end of stream).
    pub(crate) fn has_remainder(&self) -> bool {
        self.start < self.buf.len()
    }
}
