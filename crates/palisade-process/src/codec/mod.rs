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

mod buffer;
#[cfg(feature = "json")]
mod json;
mod length;

pub(crate) use self::buffer::FrameBuffer;
#[cfg(feature = "json")]
pub use self::json::Json;
pub use self::length::LengthPrefixed;
