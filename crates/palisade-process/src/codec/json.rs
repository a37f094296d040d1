//! [`Json`]: newline-delimited JSON frames (feature `json`).

use std::fmt;

use crate::error::FrameError;

use super::{Codec, Decoded, ServeCodec};

/// Newline-delimited JSON frames carrying `Req` requests and `Res` responses (feature
/// `json`).
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub struct Json<Req, Res> {
    _types: std::marker::PhantomData<fn() -> (Req, Res)>,
}

impl<Req, Res> Json<Req, Res> {
    /// The JSON framing.
    pub const fn new() -> Self {
        Self { _types: std::marker::PhantomData }
    }
}

impl<Req, Res> Default for Json<Req, Res> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Req, Res> Clone for Json<Req, Res> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<Req, Res> fmt::Debug for Json<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Json")
    }
}

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

fn json_err(e: &serde_json::Error) -> FrameError {
    FrameError::new(format!("invalid JSON frame: {e}"))
}

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
