//! Framing of worker requests and responses: length-prefixed binary and newline-delimited
//! JSON.
//!
//! A [`WorkerProcess`](crate::WorkerProcess) writes request frames to its child's stdin and
//! reads response frames from its stdout; every frame carries a request id, so answers may
//! come back in any order. [`Codec`] is the parent's side, [`ServeCodec`] the worker's side
//! (used by [`worker::serve`](crate::worker::serve)).
//!
//! # Length-prefixed binary ([`LengthPrefixed`])
//!
//! All integers big-endian.
//!
//! ```text
//! request:  u32 len | u64 id | body                  (len = 8 + body length)
//! response: u32 len | u64 id | u8 tag | body         (len = 9 + body length;
//!                                                     tag 0: body is the answer,
//!                                                     tag 1: body is a UTF-8 error message)
//! ```
//!
//! # Newline-delimited JSON ([`Json`], feature `json`)
//!
//! One object per line:
//!
//! ```text
//! request:  {"id":1,"body":<request>}
//! response: {"id":1,"ok":<response>}   or   {"id":1,"err":"message"}
//! ```
//!
//! # Example
//!
//! ```
//! use palisade_process::codec::{Codec, LengthPrefixed, ServeCodec};
//!
//! let mut wire = Vec::new();
//! LengthPrefixed.encode_request(7, &b"ping".to_vec(), &mut wire).unwrap();
//! let frame = LengthPrefixed.decode_request(&wire, 1024).unwrap().expect("a whole frame");
//! assert_eq!((frame.id, frame.value.as_slice(), frame.consumed), (7, &b"ping"[..], wire.len()));
//! // Half a frame is not a frame yet.
//! assert!(LengthPrefixed.decode_request(&wire[..6], 1024).unwrap().is_none());
//! ```
//!
//! A frame longer than the configured maximum, a length or tag out of range, a line that
//! is not such an object, or an answer to an id that is not in flight is a protocol error:
//! the worker is killed and every request in flight fails.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::FrameError;

/// One decoded frame: how many bytes it took, its request id and its content.
#[derive(Debug)]
pub struct Decoded<T> {
    /// Bytes of input the frame used: at least 1 and at most the input's length (anything
    /// else is a protocol error of the stream).
    pub consumed: usize,
    /// The request id.
    pub id: u64,
    /// The content.
    pub value: T,
}

/// The parent's side of a framing: encodes requests, decodes responses.
pub trait Codec: Send + Sync + 'static {
    /// What a caller sends.
    type Request: Send + 'static;
    /// What the worker answers.
    type Response: Send + 'static;

    /// Appends the frame of request `id` to `dst`.
    fn encode_request(&self, id: u64, request: &Self::Request, dst: &mut Vec<u8>) -> Result<(), FrameError>;

    /// The byte that ends every frame, for delimited framings (`b'\n'` for NDJSON). When
    /// set, the reader only tries to decode once a new delimiter has arrived, so a long
    /// frame arriving in many small reads is scanned once rather than once per read.
    fn delimiter(&self) -> Option<u8> {
        None
    }

    /// Decodes the response frame at the start of `src`, if it is complete. `Err(message)`
    /// in the value is an error the worker answered with. Frames over `max_frame_len` bytes
    /// are errors.
    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Self::Response, String>>>, FrameError>;
}

/// The worker's side of a framing: decodes requests, encodes responses.
pub trait ServeCodec: Send + Sync + 'static {
    /// What the worker receives.
    type Request: Send + 'static;
    /// What the worker answers.
    type Response: Send + 'static;

    /// The byte that ends every frame, for delimited framings; see
    /// [`Codec::delimiter`].
    fn delimiter(&self) -> Option<u8> {
        None
    }

    /// Decodes the request frame at the start of `src`, if it is complete.
    fn decode_request(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Self::Request>>, FrameError>;

    /// Appends the frame answering request `id` (with a response or an error message).
    fn encode_response(
        &self,
        id: u64,
        response: Result<&Self::Response, &str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), FrameError>;
}

// === impl LengthPrefixed ===

/// Length-prefixed binary frames; requests and responses are raw bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct LengthPrefixed;

fn frame_len(src: &[u8], min: usize, max_frame_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(header) = src.get(..4) else { return Ok(None) };
    let mut len = [0u8; 4];
    len.copy_from_slice(header);
    let len = u32::from_be_bytes(len) as usize;
    if len < min {
        return Err(FrameError::new(format!("frame length {len} is shorter than its header")));
    }
    if len > max_frame_len {
        return Err(FrameError::new(format!("frame of {len} bytes is over the {max_frame_len}-byte limit")));
    }
    if src.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(len))
}

fn read_id(src: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&src[4..12]);
    u64::from_be_bytes(id)
}

fn put_len(len: usize, dst: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = u32::try_from(len).map_err(|_| FrameError::new("frame over 4 GiB"))?;
    dst.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

impl Codec for LengthPrefixed {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn encode_request(&self, id: u64, request: &Vec<u8>, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        dst.reserve(12 + request.len());
        put_len(8 + request.len(), dst)?;
        dst.extend_from_slice(&id.to_be_bytes());
        dst.extend_from_slice(request);
        Ok(())
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Vec<u8>, String>>>, FrameError> {
        let Some(len) = frame_len(src, 9, max_frame_len)? else { return Ok(None) };
        let id = read_id(src);
        let body = &src[13..4 + len];
        let value = match src[12] {
            0 => Ok(body.to_vec()),
            1 => Err(String::from_utf8_lossy(body).into_owned()),
            tag => return Err(FrameError::new(format!("unknown response tag {tag}"))),
        };
        Ok(Some(Decoded { consumed: 4 + len, id, value }))
    }
}

impl ServeCodec for LengthPrefixed {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn decode_request(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Vec<u8>>>, FrameError> {
        let Some(len) = frame_len(src, 8, max_frame_len)? else { return Ok(None) };
        let id = read_id(src);
        Ok(Some(Decoded { consumed: 4 + len, id, value: src[12..4 + len].to_vec() }))
    }

    fn encode_response(
        &self,
        id: u64,
        response: Result<&Vec<u8>, &str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let (tag, body) = match response {
            Ok(body) => (0u8, body.as_slice()),
            Err(message) => (1u8, message.as_bytes()),
        };
        dst.reserve(13 + body.len());
        put_len(9 + body.len(), dst)?;
        dst.extend_from_slice(&id.to_be_bytes());
        dst.push(tag);
        dst.extend_from_slice(body);
        Ok(())
    }
}

// === impl Json ===

/// Newline-delimited JSON frames carrying `Req` requests and `Res` responses (feature
/// `json`).
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub struct Json<Req, Res> {
    _types: std::marker::PhantomData<fn() -> (Req, Res)>,
}

#[cfg(feature = "json")]
impl<Req, Res> Json<Req, Res> {
    /// The JSON framing.
    pub const fn new() -> Self {
        Self { _types: std::marker::PhantomData }
    }
}

#[cfg(feature = "json")]
impl<Req, Res> Default for Json<Req, Res> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "json")]
impl<Req, Res> Clone for Json<Req, Res> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

#[cfg(feature = "json")]
impl<Req, Res> fmt::Debug for Json<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Json")
    }
}

#[cfg(feature = "json")]
mod json_wire {
    use serde::{Deserialize, Deserializer, Serialize};

    #[derive(Serialize)]
    pub(super) struct RequestOut<'a, T> {
        pub(super) id: u64,
        pub(super) body: &'a T,
    }

    #[derive(Deserialize)]
    pub(super) struct RequestIn<T> {
        pub(super) id: u64,
        pub(super) body: T,
    }

    #[derive(Serialize)]
    pub(super) struct OkOut<'a, T> {
        pub(super) id: u64,
        pub(super) ok: &'a T,
    }

    #[derive(Serialize)]
    pub(super) struct ErrOut<'a> {
        pub(super) id: u64,
        pub(super) err: &'a str,
    }

    #[derive(Deserialize)]
    #[serde(bound(deserialize = "T: Deserialize<'de>"))]
    pub(super) struct ResponseIn<T> {
        pub(super) id: u64,
        #[serde(default = "none", deserialize_with = "present")]
        pub(super) ok: Option<T>,
        #[serde(default)]
        pub(super) err: Option<String>,
    }

    fn none<T>() -> Option<T> {
        None
    }

    /// A present field is `Some` even when it is `null` (so `Res = ()` works).
    fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }
}

#[cfg(feature = "json")]
fn json_line(src: &[u8], max_frame_len: usize) -> Result<Option<usize>, FrameError> {
    match src.iter().position(|&b| b == b'\n') {
        Some(end) if end > max_frame_len => {
            Err(FrameError::new(format!("line of {end} bytes is over the {max_frame_len}-byte limit")))
        }
        Some(end) => Ok(Some(end)),
        None if src.len() > max_frame_len => {
            Err(FrameError::new(format!("line over the {max_frame_len}-byte limit")))
        }
        None => Ok(None),
    }
}

#[cfg(feature = "json")]
fn json_err(e: &serde_json::Error) -> FrameError {
    FrameError::new(format!("invalid JSON frame: {e}"))
}

#[cfg(feature = "json")]
impl<Req, Res> Codec for Json<Req, Res>
where
    Req: serde::Serialize + Send + 'static,
    Res: serde::de::DeserializeOwned + Send + 'static,
{
    type Request = Req;
    type Response = Res;

    fn delimiter(&self) -> Option<u8> {
        Some(b'\n')
    }

    fn encode_request(&self, id: u64, request: &Req, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        serde_json::to_writer(&mut *dst, &json_wire::RequestOut { id, body: request })
            .map_err(|e| json_err(&e))?;
        dst.push(b'\n');
        Ok(())
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Res, String>>>, FrameError> {
        let Some(end) = json_line(src, max_frame_len)? else { return Ok(None) };
        let frame: json_wire::ResponseIn<Res> =
            serde_json::from_slice(&src[..end]).map_err(|e| json_err(&e))?;
        let value = match (frame.ok, frame.err) {
            (Some(ok), None) => Ok(ok),
            (None, Some(err)) => Err(err),
            _ => return Err(FrameError::new("a response needs exactly one of `ok` and `err`")),
        };
        Ok(Some(Decoded { consumed: end + 1, id: frame.id, value }))
    }
}

#[cfg(feature = "json")]
impl<Req, Res> ServeCodec for Json<Req, Res>
where
    Req: serde::de::DeserializeOwned + Send + 'static,
    Res: serde::Serialize + Send + 'static,
{
    type Request = Req;
    type Response = Res;

    fn delimiter(&self) -> Option<u8> {
        Some(b'\n')
    }

    fn decode_request(&self, src: &[u8], max_frame_len: usize) -> Result<Option<Decoded<Req>>, FrameError> {
        let Some(end) = json_line(src, max_frame_len)? else { return Ok(None) };
        let frame: json_wire::RequestIn<Req> =
            serde_json::from_slice(&src[..end]).map_err(|e| json_err(&e))?;
        Ok(Some(Decoded { consumed: end + 1, id: frame.id, value: frame.body }))
    }

    fn encode_response(
        &self,
        id: u64,
        response: Result<&Res, &str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let written = match response {
            Ok(ok) => serde_json::to_writer(&mut *dst, &json_wire::OkOut { id, ok }),
            Err(err) => serde_json::to_writer(&mut *dst, &json_wire::ErrOut { id, err }),
        };
        written.map_err(|e| json_err(&e))?;
        dst.push(b'\n');
        Ok(())
    }
}

// === impl FrameBuffer ===

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
